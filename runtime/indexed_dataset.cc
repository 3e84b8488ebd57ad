// Megatron MMIDIDX reader and writer; the format is described in
// indexed_dataset.h. Values are read with memcpy because the arrays in .idx
// start at byte 34 and are not aligned.
#include "runtime/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

static_assert(std::endian::native == std::endian::little,
              "the MMIDIDX format is little endian; this reader does not swap bytes");

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kHeaderBytes = 9 + 8 + 1 + 8 + 8;  // 34

template <typename T> T Load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

bool IsIntegerDType(IndexDType t) {
  return t != IndexDType::kFloat32 && t != IndexDType::kFloat64;
}

bool IsKnownCode(uint8_t code) { return code >= 1 && code <= 8; }

std::string ErrnoText() { return std::strerror(errno); }

template <typename T> bool Fits(int32_t v) {
  return v >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
         v <= static_cast<int64_t>(std::numeric_limits<T>::max());
}

template <typename T> void Convert(absl::Span<const int32_t> in, char* out) {
  for (size_t i = 0; i < in.size(); ++i) {
    T v = static_cast<T>(in[i]);
    std::memcpy(out + i * sizeof(T), &v, sizeof(T));
  }
}

template <typename T> void MinMax(const unsigned char* in, int64_t n, int64_t* lo, int64_t* hi) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = static_cast<int64_t>(Load<T>(in + i * sizeof(T)));
    *lo = std::min(*lo, v);
    *hi = std::max(*hi, v);
  }
}

template <typename T> void Widen(const unsigned char* in, int64_t n, int32_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(Load<T>(in + i * sizeof(T)));
}

absl::Status WriteAll(std::FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes != 0 && std::fwrite(data, 1, bytes, f) != bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": write failed: ", ErrnoText()));
  }
  return absl::OkStatus();
}

}  // namespace

size_t IndexDTypeSize(IndexDType t) {
  switch (t) {
    case IndexDType::kUInt8: case IndexDType::kInt8: return 1;
    case IndexDType::kInt16: case IndexDType::kUInt16: return 2;
    case IndexDType::kInt32: case IndexDType::kFloat32: return 4;
    case IndexDType::kInt64: case IndexDType::kFloat64: return 8;
  }
  BATON_CHECK_MSG(false, "unknown IndexDType");
}

const char* IndexDTypeName(IndexDType t) {
  switch (t) {
    case IndexDType::kUInt8: return "uint8";
    case IndexDType::kInt8: return "int8";
    case IndexDType::kInt16: return "int16";
    case IndexDType::kInt32: return "int32";
    case IndexDType::kInt64: return "int64";
    case IndexDType::kFloat64: return "float64";
    case IndexDType::kFloat32: return "float32";
    case IndexDType::kUInt16: return "uint16";
  }
  return "unknown";
}

IndexDType OptimalIndexDType(int64_t vocab_size) {
  return vocab_size < 65500 ? IndexDType::kUInt16 : IndexDType::kInt32;
}

// ---- writer ----

absl::StatusOr<IndexedDatasetWriter> IndexedDatasetWriter::Create(const std::string& prefix,
                                                                  IndexDType dtype) {
  if (!IsKnownCode(static_cast<uint8_t>(dtype)) || !IsIntegerDType(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, ": token dtype must be an integer type, got ", IndexDTypeName(dtype)));
  }
  IndexedDatasetWriter w;
  w.prefix_ = prefix;
  w.dtype_ = dtype;
  const std::string tmp = prefix + ".bin.tmp";
  w.bin_ = std::fopen(tmp.c_str(), "wb");
  if (w.bin_ == nullptr) {
    return absl::NotFoundError(absl::StrCat(tmp, ": cannot create: ", ErrnoText()));
  }
  return w;
}

IndexedDatasetWriter::IndexedDatasetWriter(IndexedDatasetWriter&& o) noexcept { *this = std::move(o); }

IndexedDatasetWriter& IndexedDatasetWriter::operator=(IndexedDatasetWriter&& o) noexcept {
  if (this != &o) {
    Abandon();
    prefix_ = std::move(o.prefix_);
    dtype_ = o.dtype_;
    bin_ = std::exchange(o.bin_, nullptr);
    lengths_ = std::move(o.lengths_);
    doc_indices_ = std::move(o.doc_indices_);
    num_tokens_ = o.num_tokens_;
    scratch_ = std::move(o.scratch_);
    finished_ = std::exchange(o.finished_, true);
  }
  return *this;
}

IndexedDatasetWriter::~IndexedDatasetWriter() { Abandon(); }

void IndexedDatasetWriter::Abandon() {
  if (bin_ != nullptr) {
    std::fclose(bin_);
    bin_ = nullptr;
  }
  if (!finished_ && !prefix_.empty()) {
    std::remove((prefix_ + ".bin.tmp").c_str());
    std::remove((prefix_ + ".idx.tmp").c_str());
  }
  finished_ = true;
}

absl::Status IndexedDatasetWriter::AddSequence(absl::Span<const int32_t> tokens) {
  BATON_CHECK_MSG(bin_ != nullptr, "AddSequence after Finish");
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(prefix_, ": sequence of ", tokens.size(),
                                                   " tokens exceeds the int32 length field"));
  }
  const size_t item = IndexDTypeSize(dtype_);
  scratch_.resize(tokens.size() * item);
  auto check_and_convert = [&](auto tag) -> absl::Status {
    using T = decltype(tag);
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (!Fits<T>(tokens[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            prefix_, ": token ", tokens[i], " at position ", i, " of sequence ", lengths_.size(),
            " does not fit dtype ", IndexDTypeName(dtype_)));
      }
    }
    Convert<T>(tokens, scratch_.data());
    return absl::OkStatus();
  };
  absl::Status st;
  switch (dtype_) {
    case IndexDType::kUInt8: st = check_and_convert(uint8_t{}); break;
    case IndexDType::kInt8: st = check_and_convert(int8_t{}); break;
    case IndexDType::kInt16: st = check_and_convert(int16_t{}); break;
    case IndexDType::kUInt16: st = check_and_convert(uint16_t{}); break;
    case IndexDType::kInt32: st = check_and_convert(int32_t{}); break;
    case IndexDType::kInt64: st = check_and_convert(int64_t{}); break;
    default: BATON_CHECK_MSG(false, "non-integer dtype in writer");
  }
  BATON_RETURN_IF_ERROR(st);
  BATON_RETURN_IF_ERROR(WriteAll(bin_, scratch_.data(), scratch_.size(), prefix_ + ".bin.tmp"));
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
  num_tokens_ += static_cast<int64_t>(tokens.size());
  return absl::OkStatus();
}

void IndexedDatasetWriter::EndDocument() {
  doc_indices_.push_back(static_cast<int64_t>(lengths_.size()));
}

absl::Status IndexedDatasetWriter::Finish() {
  BATON_CHECK_MSG(bin_ != nullptr, "Finish called twice");
  if (doc_indices_.back() != static_cast<int64_t>(lengths_.size())) EndDocument();
  const std::string bin_tmp = prefix_ + ".bin.tmp", idx_tmp = prefix_ + ".idx.tmp";
  const std::string bin_path = prefix_ + ".bin", idx_path = prefix_ + ".idx";

  std::FILE* bin = std::exchange(bin_, nullptr);
  if (std::fflush(bin) != 0 || fsync(fileno(bin)) != 0) {
    std::fclose(bin);
    Abandon();
    return absl::ResourceExhaustedError(absl::StrCat(bin_tmp, ": write failed: ", ErrnoText()));
  }
  std::fclose(bin);

  std::FILE* idx = std::fopen(idx_tmp.c_str(), "wb");
  if (idx == nullptr) {
    Abandon();
    return absl::NotFoundError(absl::StrCat(idx_tmp, ": cannot create: ", ErrnoText()));
  }
  // Sequence pointers are the running byte offsets, as Megatron's
  // _IndexWriter._sequence_pointers computes them.
  const int64_t item = static_cast<int64_t>(IndexDTypeSize(dtype_));
  std::vector<int64_t> pointers(lengths_.size());
  int64_t ptr = 0;
  for (size_t i = 0; i < lengths_.size(); ++i) {
    pointers[i] = ptr;
    ptr += lengths_[i] * item;
  }
  const uint64_t version = 1, n = lengths_.size(), d = doc_indices_.size();
  const uint8_t code = static_cast<uint8_t>(dtype_);
  absl::Status st = WriteAll(idx, kMagic, sizeof(kMagic), idx_tmp);
  if (st.ok()) st = WriteAll(idx, &version, 8, idx_tmp);
  if (st.ok()) st = WriteAll(idx, &code, 1, idx_tmp);
  if (st.ok()) st = WriteAll(idx, &n, 8, idx_tmp);
  if (st.ok()) st = WriteAll(idx, &d, 8, idx_tmp);
  if (st.ok()) st = WriteAll(idx, lengths_.data(), n * 4, idx_tmp);
  if (st.ok()) st = WriteAll(idx, pointers.data(), n * 8, idx_tmp);
  if (st.ok()) st = WriteAll(idx, doc_indices_.data(), d * 8, idx_tmp);
  if (st.ok() && (std::fflush(idx) != 0 || fsync(fileno(idx)) != 0)) {
    st = absl::ResourceExhaustedError(absl::StrCat(idx_tmp, ": write failed: ", ErrnoText()));
  }
  std::fclose(idx);
  if (!st.ok()) {
    Abandon();
    return st;
  }
  // Drop a stale index first: at every instant PREFIX.idx is either absent
  // or consistent with PREFIX.bin, and readers open the .idx first.
  if (std::remove(idx_path.c_str()) != 0 && errno != ENOENT) {
    Abandon();
    return absl::InternalError(absl::StrCat(idx_path, ": cannot replace: ", ErrnoText()));
  }
  if (std::rename(bin_tmp.c_str(), bin_path.c_str()) != 0) {
    Abandon();
    return absl::InternalError(absl::StrCat(bin_path, ": rename failed: ", ErrnoText()));
  }
  if (std::rename(idx_tmp.c_str(), idx_path.c_str()) != 0) {
    Abandon();
    return absl::InternalError(absl::StrCat(idx_path, ": rename failed: ", ErrnoText()));
  }
  finished_ = true;
  return absl::OkStatus();
}

// ---- reader ----

class MappedFile {
 public:
  MappedFile(const unsigned char* data, size_t size) : data_(data), size_(size) {}
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) munmap(const_cast<unsigned char*>(data_), size_);
  }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_;  // null for an empty file (mmap refuses length 0)
  size_t size_;
};

namespace {

absl::StatusOr<std::shared_ptr<const MappedFile>> MapFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open: ", ErrnoText()));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    const std::string err = ErrnoText();
    close(fd);
    return absl::InternalError(absl::StrCat(path, ": stat failed: ", err));
  }
  const size_t size = static_cast<size_t>(sb.st_size);
  void* data = nullptr;
  if (size > 0) {
    data = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) {
      const std::string err = ErrnoText();
      close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(path, ": mmap failed: ", err));
    }
  }
  close(fd);  // the mapping keeps the file alive
  return std::make_shared<const MappedFile>(static_cast<const unsigned char*>(data), size);
}

}  // namespace

absl::StatusOr<IndexedDataset> IndexedDataset::Open(const std::string& prefix) {
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  IndexedDataset ds;
  BATON_ASSIGN_OR_RETURN(ds.idx_, MapFile(idx_path));
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(idx_path, ": ", parts...));
  };
  const unsigned char* p = ds.idx_->data();
  const size_t idx_size = ds.idx_->size();
  if (idx_size < sizeof(kMagic) || std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    return bad("bad magic, not a Megatron MMIDIDX index");
  }
  if (idx_size < kHeaderBytes) {
    return bad("truncated header: ", idx_size, " bytes, need ", kHeaderBytes);
  }
  const uint64_t version = Load<uint64_t>(p + 9);
  if (version != 1) return bad("unsupported version ", version, " (expected 1)");
  const uint8_t code = p[17];
  if (!IsKnownCode(code)) return bad("unknown dtype code ", int{code});
  ds.dtype_ = static_cast<IndexDType>(code);
  if (!IsIntegerDType(ds.dtype_)) {
    return bad("dtype ", IndexDTypeName(ds.dtype_), " cannot hold token ids");
  }
  const uint64_t n = Load<uint64_t>(p + 18), d = Load<uint64_t>(p + 26);
  // Bound the counts before multiplying so a corrupt header cannot overflow.
  const uint64_t room = idx_size - kHeaderBytes;
  if (n > room / 12 || d > room / 8 || d == 0) {
    return bad("sequence count ", n, " / document count ", d, " do not fit a ", idx_size,
               "-byte index");
  }
  const uint64_t expected = kHeaderBytes + 12 * n + 8 * d;
  // Megatron's multimodal variant appends one int8 mode per sequence.
  if (idx_size != expected && idx_size != expected + n) {
    return bad("size ", idx_size, " bytes does not match its header (", n, " sequences, ", d,
               " document indices: expected ", expected, " bytes)");
  }
  ds.num_sequences_ = static_cast<int64_t>(n);
  ds.num_doc_indices_ = static_cast<int64_t>(d);
  ds.lengths_ = p + kHeaderBytes;
  ds.pointers_ = ds.lengths_ + 4 * n;
  ds.doc_indices_ = ds.pointers_ + 8 * n;

  if (ds.document_index(0) != 0) return bad("document_indices[0] is ", ds.document_index(0), ", not 0");
  for (int64_t i = 1; i < ds.num_doc_indices_; ++i) {
    if (ds.document_index(i) < ds.document_index(i - 1)) {
      return bad("document_indices decrease at ", i);
    }
  }
  if (ds.document_index(ds.num_doc_indices_ - 1) != ds.num_sequences_) {
    return bad("last document index ", ds.document_index(ds.num_doc_indices_ - 1),
               " != sequence count ", n);
  }

  BATON_ASSIGN_OR_RETURN(ds.bin_, MapFile(bin_path));
  ds.bin_path_ = bin_path;
  const int64_t bin_size = static_cast<int64_t>(ds.bin_->size());
  const int64_t item = static_cast<int64_t>(IndexDTypeSize(ds.dtype_));
  for (int64_t i = 0; i < ds.num_sequences_; ++i) {
    const int64_t len = ds.sequence_length(i), ptr = ds.sequence_pointer(i);
    if (len < 0 || ptr < 0 || ptr % item != 0 || ptr > bin_size || len > (bin_size - ptr) / item) {
      return absl::InvalidArgumentError(absl::StrCat(
          bin_path, ": sequence ", i, " (", len, " tokens at byte ", ptr,
          ") lies outside the ", bin_size, "-byte file; .bin and .idx do not match"));
    }
    ds.num_tokens_ += len;
  }
  return ds;
}

int32_t IndexedDataset::sequence_length(int64_t seq) const {
  BATON_CHECK(seq >= 0 && seq < num_sequences_);
  return Load<int32_t>(lengths_ + 4 * seq);
}

int64_t IndexedDataset::sequence_pointer(int64_t seq) const {
  BATON_CHECK(seq >= 0 && seq < num_sequences_);
  return Load<int64_t>(pointers_ + 8 * seq);
}

int64_t IndexedDataset::document_index(int64_t doc) const {
  BATON_CHECK(doc >= 0 && doc < num_doc_indices_);
  return Load<int64_t>(doc_indices_ + 8 * doc);
}

void IndexedDataset::Get(int64_t seq, int64_t offset, int64_t len, int32_t* out) const {
  const int64_t seq_len = sequence_length(seq);
  BATON_CHECK(offset >= 0 && len >= 0 && offset + len <= seq_len);
  if (len == 0) return;
  const size_t item = IndexDTypeSize(dtype_);
  const unsigned char* src = bin_->data() + sequence_pointer(seq) + offset * item;
  switch (dtype_) {
    case IndexDType::kUInt8: Widen<uint8_t>(src, len, out); break;
    case IndexDType::kInt8: Widen<int8_t>(src, len, out); break;
    case IndexDType::kInt16: Widen<int16_t>(src, len, out); break;
    case IndexDType::kUInt16: Widen<uint16_t>(src, len, out); break;
    case IndexDType::kInt32: std::memcpy(out, src, static_cast<size_t>(len) * 4); break;
    case IndexDType::kInt64: Widen<int64_t>(src, len, out); break;  // ids beyond int32 are not tokens
    default: BATON_CHECK_MSG(false, "non-integer dtype in reader");
  }
}

std::vector<int32_t> IndexedDataset::Get(int64_t seq) const {
  std::vector<int32_t> out(static_cast<size_t>(sequence_length(seq)));
  Get(seq, 0, static_cast<int64_t>(out.size()), out.data());
  return out;
}

IndexedDataset::IdRange IndexedDataset::TokenIdRange() const {
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (int64_t seq = 0; seq < num_sequences_; ++seq) {
    const unsigned char* src = bin_->data() + sequence_pointer(seq);
    const int64_t n = sequence_length(seq);
    switch (dtype_) {
      case IndexDType::kUInt8: MinMax<uint8_t>(src, n, &lo, &hi); break;
      case IndexDType::kInt8: MinMax<int8_t>(src, n, &lo, &hi); break;
      case IndexDType::kInt16: MinMax<int16_t>(src, n, &lo, &hi); break;
      case IndexDType::kUInt16: MinMax<uint16_t>(src, n, &lo, &hi); break;
      case IndexDType::kInt32: MinMax<int32_t>(src, n, &lo, &hi); break;
      case IndexDType::kInt64: MinMax<int64_t>(src, n, &lo, &hi); break;
      default: BATON_CHECK_MSG(false, "non-integer dtype in reader");
    }
  }
  if (lo > hi) return {};
  return {lo, hi};
}

absl::Status IndexedDataset::CheckTokenIds(int64_t vocab_size) const {
  const IdRange r = TokenIdRange();
  if (r.max < r.min) return absl::OkStatus();
  if (r.min < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(bin_path_, ": holds token id ", r.min, "; token ids must be >= 0"));
  }
  if (r.max >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(bin_path_, ": holds token id ", r.max, " but model.vocab_size=",
                                                   vocab_size, " (ids must be < vocab_size: raise model.vocab_size "
                                                   "or retokenize with a smaller vocabulary)"));
  }
  return absl::OkStatus();
}

}  // namespace baton
