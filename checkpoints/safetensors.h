// The Hugging Face safetensors format: a reader over a memory-mapped file
// and an atomic writer. `baton export` writes HF checkpoints with it and
// `baton import` reads them. The writer mirrors the reference
// (huggingface/safetensors, `prepare()` in safetensors/src/tensor.rs) so a
// file is byte-identical to `safetensors.{numpy,torch}.save_file` for the
// same tensors: tensors sorted by dtype (widest alignment first) then name,
// compact JSON with `__metadata__` first, header padded with spaces to a
// multiple of 8. The reader validates like the reference (header <= 100 MB,
// tensors contiguous from offset 0 with no holes or overlaps, sizes matching
// dtype × shape, the buffer ending exactly at the end of the file) and is
// stricter on duplicate keys; a bad file is a one-line InvalidArgument naming
// the file and the tensor, never an out-of-bounds read.
//
// Layout: [u64 little-endian N][N bytes UTF-8 JSON header][data buffer]
//   header: {"__metadata__": {str: str}?, NAME: {"dtype": "F32",
//            "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
//   offsets are bytes relative to the start of the data buffer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/tensor.h"

namespace baton {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;            // "F32", "BF16", "I64", ... (safetensors spelling)
  std::vector<int64_t> shape;   // [] is a scalar
  uint64_t begin = 0, end = 0;  // bytes, relative to the start of the data buffer
};

// Bits per element of a safetensors dtype ("F32" -> 32, "F4" -> 4); 0 if the
// name is not a safetensors dtype.
int SafetensorsDTypeBits(std::string_view dtype);

// A whole file image parsed and validated; `path` only names it in errors.
// Entries are in buffer order (increasing offsets). Exposed for the fuzz
// target and tests; SafetensorsFile::Open is the normal entry point.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data buffer: 8 + N
};
absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::Span<const uint8_t> file,
                                                   std::string_view path);

// A read-only, memory-mapped safetensors file. Copies share the mapping;
// spans from Bytes() stay valid while any copy is alive.
class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsEntry* Find(std::string_view name) const;  // null if absent
  absl::Span<const uint8_t> Bytes(const SafetensorsEntry& entry) const;

  // Copies a tensor into a new contiguous CPU Tensor: F32/F16/BF16/F64 as
  // f32, I32/I64 as i32 (an I64 value outside the i32 range is an error).
  // Other dtypes are Unimplemented; an unknown name is NotFound.
  absl::StatusOr<Tensor> ReadAsF32(std::string_view name) const;

 private:
  SafetensorsFile() = default;  // only Open() makes one
  struct Mapping;  // munmap()s on destruction
  std::shared_ptr<const Mapping> mapping_;
  std::string path_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> entries() index
};

struct SafetensorsTensor {
  std::string name;
  Tensor tensor;      // CPU; any strides
  std::string dtype = "";  // "" = the tensor's own; "BF16"/"F16" narrow an f32 tensor (round to nearest even)
};

// Writes `tensors` (unique names, "__metadata__" reserved) to `path` through
// a temporary file in the same directory and a rename, so `path` holds either
// its old contents or the complete new file. An empty `metadata` writes no
// "__metadata__" key (HF's metadata=None); keys are written in sorted order
// (HF's own order for several keys is its hash map's, i.e. arbitrary).
absl::Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace baton
