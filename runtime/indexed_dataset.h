// Megatron-LM's memory-mapped indexed dataset (PREFIX.idx + PREFIX.bin),
// read and written byte-compatibly so datasets move freely between baton
// and Megatron (megatron/core/datasets/indexed_dataset.py). The writer is
// used by `baton data tokenize`; the reader feeds the Sampler.
//
// Format (little endian, no padding):
//   .idx  "MMIDIDX\0\0" (9 bytes) | u64 version = 1 | u8 dtype code
//         | u64 sequence_count N | u64 document_count D (= documents + 1)
//         | i32 sequence_lengths[N] | i64 sequence_pointers[N] (byte offsets
//         into .bin) | i64 document_indices[D] (sequence index where each
//         document starts; [0] = 0, [D-1] = N)
//   .bin  the tokens of every sequence, concatenated, in the dtype.
// Invariant: a finished writer leaves both files complete under their final
// names or, on failure, no file under them; a reader that opened fine can
// read every sequence without going past the end of .bin.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace baton {

class MappedFile;  // read-only mmap of one file (indexed_dataset.cc)

// Megatron's DType codes (the enum values are written to the .idx).
enum class IndexDType : uint8_t {
  kUInt8 = 1, kInt8 = 2, kInt16 = 3, kInt32 = 4, kInt64 = 5,
  kFloat64 = 6, kFloat32 = 7, kUInt16 = 8,
};

size_t IndexDTypeSize(IndexDType t);
const char* IndexDTypeName(IndexDType t);  // numpy's name: "uint16"
// Megatron's DType.optimal_dtype: uint16 when vocab_size < 65500, else int32.
IndexDType OptimalIndexDType(int64_t vocab_size);

// Builds PREFIX.bin/.idx like Megatron's IndexedDatasetBuilder with
// add_item + end_document. Writes PREFIX.bin.tmp / PREFIX.idx.tmp and
// renames them in Finish(); a writer destroyed before Finish() removes its
// temporary files. Movable, not copyable.
class IndexedDatasetWriter {
 public:
  // dtype must be an integer type (token ids).
  static absl::StatusOr<IndexedDatasetWriter> Create(const std::string& prefix, IndexDType dtype);

  IndexedDatasetWriter(IndexedDatasetWriter&&) noexcept;
  IndexedDatasetWriter& operator=(IndexedDatasetWriter&&) noexcept;
  ~IndexedDatasetWriter();

  // Appends one sequence. InvalidArgument if a token does not fit the dtype.
  absl::Status AddSequence(absl::Span<const int32_t> tokens);
  // Closes the current document: Megatron appends the sequence count to the
  // document indices, so a call with no sequence since the last one writes
  // an empty document, as Megatron does.
  void EndDocument();
  // Closes a document left open (sequences after the last EndDocument), then
  // writes the index and renames both files into place.
  absl::Status Finish();

  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t num_tokens() const { return num_tokens_; }

 private:
  IndexedDatasetWriter() = default;
  void Abandon();  // closes and deletes the temporary files

  std::string prefix_;
  IndexDType dtype_ = IndexDType::kInt32;
  std::FILE* bin_ = nullptr;      // PREFIX.bin.tmp while open
  std::vector<int32_t> lengths_;  // (N,)
  std::vector<int64_t> doc_indices_{0};  // (D,)
  int64_t num_tokens_ = 0;
  std::vector<char> scratch_;     // one sequence converted to dtype
  bool finished_ = false;
};

// Read-only, memory-mapped view of PREFIX.idx/.bin. Open() validates the
// header and every sequence's extent against the file sizes, so accessors
// only BATON_CHECK their arguments. Copies share the mappings.
class IndexedDataset {
 public:
  static absl::StatusOr<IndexedDataset> Open(const std::string& prefix);

  IndexDType dtype() const { return dtype_; }
  int64_t num_sequences() const { return num_sequences_; }
  int64_t num_documents() const { return num_doc_indices_ - 1; }
  int64_t num_tokens() const { return num_tokens_; }
  int32_t sequence_length(int64_t seq) const;
  int64_t sequence_pointer(int64_t seq) const;  // byte offset into .bin
  // Sequence index where document `doc` starts; doc in [0, num_documents()],
  // document d holds sequences [document_index(d), document_index(d + 1)).
  int64_t document_index(int64_t doc) const;

  // Copies tokens [offset, offset + len) of sequence `seq` into out (len,).
  void Get(int64_t seq, int64_t offset, int64_t len, int32_t* out) const;
  std::vector<int32_t> Get(int64_t seq) const;  // the whole sequence

  // Smallest and largest token id over every sequence, read in the file's
  // own dtype (an int64 id of 2^31 or more is reported as is, not wrapped).
  // {0, -1} for a dataset without tokens.
  struct IdRange {
    int64_t min = 0, max = -1;
  };
  IdRange TokenIdRange() const;
  // InvalidArgument naming PREFIX.bin and the offending id when an id lies
  // outside [0, vocab_size): such ids would index past the embedding and
  // the loss. The model reads every id as int32, so this also refuses ids
  // an int64 dataset could not hand over unwrapped.
  absl::Status CheckTokenIds(int64_t vocab_size) const;

 private:
  std::string bin_path_;
  std::shared_ptr<const MappedFile> idx_, bin_;
  IndexDType dtype_ = IndexDType::kInt32;
  int64_t num_sequences_ = 0;
  int64_t num_doc_indices_ = 0;
  int64_t num_tokens_ = 0;
  const unsigned char* lengths_ = nullptr;   // i32 (N,), unaligned in .idx
  const unsigned char* pointers_ = nullptr;  // i64 (N,)
  const unsigned char* doc_indices_ = nullptr;  // i64 (D,)
};

}  // namespace baton
