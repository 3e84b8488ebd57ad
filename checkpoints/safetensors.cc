// safetensors reader and writer (see safetensors.h). The reference's rules
// live in huggingface/safetensors safetensors/src/tensor.rs: read_metadata()
// and Metadata::validate() for reading, prepare() for writing.
#include "checkpoints/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "kernels/cpu/convert.h"

namespace baton {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // MAX_HEADER_SIZE in the reference

// In the reference's enum order: the writer sorts by descending position.
struct DTypeInfo {
  const char* name;
  int bits;
};
constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 8},        {"F4", 4},           {"F6_E2M3", 6},      {"F6_E3M2", 6}, {"U8", 8},
    {"I8", 8},          {"F8_E5M2", 8},      {"F8_E4M3", 8},      {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
    {"F8_E5M2FNUZ", 8}, {"I16", 16},         {"U16", 16},         {"F16", 16},    {"BF16", 16},
    {"I32", 32},        {"U32", 32},         {"F32", 32},         {"C64", 64},    {"F64", 64},
    {"I64", 64},        {"U64", 64},
};

int DTypeRank(std::string_view name) {
  for (size_t i = 0; i < std::size(kDTypes); ++i) {
    if (name == kDTypes[i].name) return static_cast<int>(i);
  }
  return -1;
}

// Abseil 20220623 has its own string_view; the API speaks std's.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Quote(std::string_view s) { return absl::StrCat("\"", absl::CHexEscape(Av(s)), "\""); }

absl::Status Bad(std::string_view path, std::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(Av(path), ": ", Av(msg)));
}

absl::Status BadTensor(std::string_view path, std::string_view name, std::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(Av(path), ": tensor ", Quote(name), ": ", Av(msg)));
}

absl::Status Errno(std::string_view path, std::string_view what) {
  int e = errno;
  std::string msg = absl::StrCat(Av(path), ": ", Av(what), ": ", std::strerror(e));
  return e == ENOENT ? absl::NotFoundError(msg) : absl::UnknownError(msg);
}

// A JSON integer >= 0 (serde's usize accepts "-0" and rejects 2.0).
bool AsU64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

absl::StatusOr<SafetensorsEntry> ParseEntry(std::string_view path, const std::string& name,
                                            const nlohmann::json& j) {
  if (!j.is_object()) return BadTensor(path, name, absl::StrCat("entry is a JSON ", j.type_name(), ", not an object"));
  SafetensorsEntry e;
  e.name = name;
  auto dtype = j.find("dtype");
  if (dtype == j.end() || !dtype->is_string()) return BadTensor(path, name, "missing string field \"dtype\"");
  e.dtype = dtype->get<std::string>();
  if (DTypeRank(e.dtype) < 0) return BadTensor(path, name, absl::StrCat("unknown dtype ", Quote(e.dtype)));

  auto shape = j.find("shape");
  if (shape == j.end() || !shape->is_array()) return BadTensor(path, name, "missing array field \"shape\"");
  for (const nlohmann::json& d : *shape) {
    uint64_t v;
    if (!AsU64(d, &v)) return BadTensor(path, name, absl::StrCat("shape ", shape->dump().substr(0, 80), " has a non-integer or negative dimension"));
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return BadTensor(path, name, absl::StrCat("shape dimension ", v, " is too large"));
    }
    e.shape.push_back(static_cast<int64_t>(v));
  }

  auto offsets = j.find("data_offsets");
  if (offsets == j.end() || !offsets->is_array() || offsets->size() != 2 ||
      !AsU64((*offsets)[0], &e.begin) || !AsU64((*offsets)[1], &e.end)) {
    return BadTensor(path, name, "\"data_offsets\" must be [begin, end] with integers >= 0");
  }
  return e;
}

// Parses the header JSON, rejecting duplicate keys in any object (the
// reference would silently keep the last tensor of a duplicated name).
absl::StatusOr<nlohmann::json> ParseJson(std::string_view path, const char* begin, const char* end) {
  std::vector<std::set<std::string>> keys;  // one per open object
  std::string duplicate;
  auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) keys.emplace_back();
    if (event == Event::object_end && !keys.empty()) keys.pop_back();
    if (event == Event::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
        duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  // nlohmann stops at a NUL as if the input ended there; JSON allows none.
  if (const void* nul = std::memchr(begin, 0, static_cast<size_t>(end - begin))) {
    return Bad(path, absl::StrCat("header is not valid JSON: NUL byte at offset ",
                                  static_cast<const char*>(nul) - begin));
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(begin, end, callback);
  } catch (const nlohmann::json::exception& e) {
    return Bad(path, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!duplicate.empty()) return Bad(path, absl::StrCat("header has duplicate key ", Quote(duplicate)));
  return j;
}

}  // namespace

int SafetensorsDTypeBits(std::string_view dtype) {
  int rank = DTypeRank(dtype);
  return rank < 0 ? 0 : kDTypes[rank].bits;
}

// ---- reading

absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::Span<const uint8_t> file, std::string_view path) {
  if (file.size() < 8) return Bad(path, absl::StrCat("file is ", file.size(), " bytes, too small for the 8-byte header length"));
  uint64_t n;
  std::memcpy(&n, file.data(), 8);
  if (n > kMaxHeaderBytes) return Bad(path, absl::StrCat("header length ", n, " exceeds the 100 MB limit (corrupt file?)"));
  if (n > file.size() - 8) {
    return Bad(path, absl::StrCat("header length ", n, " runs past the end of the file (", file.size(), " bytes)"));
  }
  const char* text = reinterpret_cast<const char*>(file.data() + 8);
  BATON_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(path, text, text + n));
  if (!j.is_object()) return Bad(path, absl::StrCat("header is a JSON ", j.type_name(), ", not an object"));

  SafetensorsHeader h;
  h.data_start = 8 + n;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) return Bad(path, "\"__metadata__\" must be an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) return Bad(path, absl::StrCat("\"__metadata__\" value of ", Quote(mk), " is not a string"));
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    BATON_ASSIGN_OR_RETURN(SafetensorsEntry e, ParseEntry(path, key, value));
    h.entries.push_back(std::move(e));
  }

  // Buffer order; ties (empty tensors) keep name order.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  uint64_t covered = 0;  // the buffer must be tiled from 0, in order, with no holes
  for (const SafetensorsEntry& e : h.entries) {
    if (e.end < e.begin) {
      return BadTensor(path, e.name, absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] end before they begin"));
    }
    if (e.begin != covered) {
      return BadTensor(path, e.name, absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] should start at ", covered,
                                                  " (tensors must tile the buffer without holes or overlaps)"));
    }
    covered = e.end;
    // The reference's overflow rule (bits × dims in order), plus ours: the
    // nonzero dims' product fits int64, so Tensor's numel and strides do too.
    uint64_t bits = static_cast<uint64_t>(SafetensorsDTypeBits(e.dtype));
    int64_t nonzero = 1;
    for (int64_t d : e.shape) {
      if (__builtin_mul_overflow(bits, static_cast<uint64_t>(d), &bits) ||
          __builtin_mul_overflow(nonzero, std::max<int64_t>(d, 1), &nonzero)) {
        return BadTensor(path, e.name, absl::StrCat("shape [", absl::StrJoin(e.shape, ", "), "] overflows"));
      }
    }
    if (bits % 8 != 0) return BadTensor(path, e.name, absl::StrCat(e.dtype, " tensor does not fill whole bytes"));
    if (e.end - e.begin != bits / 8) {
      return BadTensor(path, e.name,
                       absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin, " bytes but ",
                                    e.dtype, "[", absl::StrJoin(e.shape, ", "), "] needs ", bits / 8));
    }
  }
  uint64_t buffer = file.size() - h.data_start;
  if (covered != buffer) {
    return Bad(path, absl::StrCat("data buffer is ", buffer, " bytes but the tensors cover ", covered,
                                  covered > buffer ? " (truncated file?)" : " (trailing bytes)"));
  }
  return h;
}

struct SafetensorsFile::Mapping {
  void* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data != nullptr) munmap(data, size);
  }
};

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(path, "cannot open");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    absl::Status s = Errno(path, "cannot stat");
    close(fd);
    return s;
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size > 0) {  // mmap of 0 bytes fails; ParseSafetensors names the problem
    void* p = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      absl::Status s = Errno(path, "cannot mmap");
      close(fd);
      return s;
    }
    mapping->data = p;
  }
  close(fd);

  SafetensorsFile f;
  f.path_ = path;
  absl::Span<const uint8_t> bytes(static_cast<const uint8_t*>(mapping->data), mapping->size);
  BATON_ASSIGN_OR_RETURN(f.header_, ParseSafetensors(bytes, path));
  f.mapping_ = std::move(mapping);
  for (size_t i = 0; i < f.header_.entries.size(); ++i) f.index_[f.header_.entries[i].name] = i;
  return f;
}

const SafetensorsEntry* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.entries[it->second];
}

absl::Span<const uint8_t> SafetensorsFile::Bytes(const SafetensorsEntry& entry) const {
  BATON_CHECK_MSG(entry.end >= entry.begin && header_.data_start + entry.end <= mapping_->size,
                  "entry does not belong to this file");
  return {static_cast<const uint8_t*>(mapping_->data) + header_.data_start + entry.begin, entry.end - entry.begin};
}

absl::StatusOr<Tensor> SafetensorsFile::ReadAsF32(std::string_view name) const {
  const SafetensorsEntry* e = Find(name);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat(path_, ": no tensor named ", Quote(name)));
  absl::Span<const uint8_t> bytes = Bytes(*e);
  const uint8_t* src = bytes.data();  // not necessarily aligned: memcpy per element
  const std::string& dt = e->dtype;
  bool is_int = dt == "I32" || dt == "I64";
  if (!is_int && dt != "F32" && dt != "F16" && dt != "BF16" && dt != "F64") {
    return absl::UnimplementedError(absl::StrCat(path_, ": tensor ", Quote(name), ": cannot read ", dt, " as f32 or i32"));
  }
  Tensor t = Tensor::Empty(e->shape, is_int ? DType::kI32 : DType::kF32);
  int64_t n = t.numel();
  if (dt == "F32" || dt == "I32") {
    if (n > 0) std::memcpy(t.raw(), src, bytes.size());
  } else if (dt == "F16" || dt == "BF16") {
    float* out = t.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = dt == "F16" ? cpu::F16ToF32(h) : cpu::Bf16ToF32(h);
    }
  } else if (dt == "F64") {
    float* out = t.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, src + 8 * i, 8);
      out[i] = static_cast<float>(v);
    }
  } else {  // I64
    int32_t* out = t.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t v;
      std::memcpy(&v, src + 8 * i, 8);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        return absl::OutOfRangeError(absl::StrCat(path_, ": tensor ", Quote(name), ": I64 value ", v, " at index ", i,
                                                  " does not fit in i32"));
      }
      out[i] = static_cast<int32_t>(v);
    }
  }
  return t;
}

// ---- writing

namespace {

const char* SafetensorsName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI32: return "I32";
    case DType::kF64: return "F64";
  }
  return "?";
}

struct Planned {
  const SafetensorsTensor* src;
  Tensor contiguous;
  std::string dtype;  // output
  uint64_t bytes;
};

// serde_json and nlohmann escape strings alike: \" \\ \b \f \n \r \t, other
// control characters as \u00xx (lowercase), everything else (UTF-8) verbatim.
absl::StatusOr<std::string> JsonString(std::string_view path, std::string_view what, const std::string& s) {
  try {
    return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
    return Bad(path, absl::StrCat(Av(what), " ", Quote(s), " is not valid UTF-8"));
  }
}

absl::Status WriteAll(int fd, const void* data, size_t n, const std::string& tmp) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Errno(tmp, "write failed");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status WriteData(int fd, const Planned& p, const std::string& tmp) {
  const Tensor& t = p.contiguous;
  if (p.dtype == SafetensorsName(t.dtype())) return WriteAll(fd, t.raw(), t.nbytes(), tmp);
  constexpr int64_t kChunk = int64_t{1} << 18;  // elements per staging buffer
  std::vector<uint16_t> staged(static_cast<size_t>(std::min(kChunk, t.numel())));
  const float* in = t.data<float>();
  for (int64_t i = 0; i < t.numel(); i += kChunk) {
    int64_t m = std::min(kChunk, t.numel() - i);
    if (p.dtype == "BF16") {
      cpu::F32ToBf16(in + i, m, staged.data());
    } else {
      cpu::F32ToF16(in + i, m, staged.data());
    }
    BATON_RETURN_IF_ERROR(WriteAll(fd, staged.data(), static_cast<size_t>(m) * 2, tmp));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BuildHeader(const std::string& path, const std::vector<Planned>& plan,
                                        const std::map<std::string, std::string>& metadata) {
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      BATON_ASSIGN_OR_RETURN(std::string key, JsonString(path, "metadata key", k));
      BATON_ASSIGN_OR_RETURN(std::string value, JsonString(path, "metadata value", v));
      absl::StrAppend(&h, first ? "" : ",", key, ":", value);
      first = false;
    }
    h += "}";
  }
  uint64_t offset = 0;
  for (const Planned& p : plan) {
    BATON_ASSIGN_OR_RETURN(std::string name, JsonString(path, "tensor name", p.src->name));
    absl::StrAppend(&h, h.size() > 1 ? "," : "", name, ":{\"dtype\":\"", p.dtype, "\",\"shape\":[",
                    absl::StrJoin(p.contiguous.shape(), ","), "],\"data_offsets\":[", offset, ",", offset + p.bytes, "]}");
    offset += p.bytes;
  }
  h += "}";
  h.resize((h.size() + 7) / 8 * 8, ' ');  // the data buffer starts 8-byte aligned
  if (h.size() > kMaxHeaderBytes) return Bad(path, absl::StrCat("header would be ", h.size(), " bytes, over the 100 MB limit"));
  return h;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<Planned> plan;
  std::set<std::string_view> names;
  for (const SafetensorsTensor& st : tensors) {
    if (!st.tensor.defined()) return BadTensor(path, st.name, "tensor is undefined");
    if (st.tensor.device() != Device::kCpu) return BadTensor(path, st.name, "tensor is not on the CPU");
    if (st.name == "__metadata__") return BadTensor(path, st.name, "name is reserved");
    if (!names.insert(st.name).second) return BadTensor(path, st.name, "name appears twice");
    std::string own = SafetensorsName(st.tensor.dtype());
    std::string out = st.dtype.empty() ? own : st.dtype;
    if (out != own && !(own == "F32" && (out == "BF16" || out == "F16"))) {
      return BadTensor(path, st.name, absl::StrCat("cannot write a ", own, " tensor as ", Quote(out),
                                                   " (only F32 narrows, to BF16 or F16)"));
    }
    Tensor c = st.tensor.is_contiguous() ? st.tensor : st.tensor.Clone();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * static_cast<uint64_t>(SafetensorsDTypeBits(out) / 8);
    plan.push_back({&st, std::move(c), std::move(out), bytes});
  }
  // Descending dtype rank, then name (bytewise, as Rust's String order).
  std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    int ra = DTypeRank(a.dtype), rb = DTypeRank(b.dtype);
    return ra != rb ? ra > rb : a.src->name < b.src->name;
  });
  BATON_ASSIGN_OR_RETURN(std::string header, BuildHeader(path, plan, metadata));

  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return Errno(tmp, "cannot create temporary file");
  auto fail = [&](absl::Status s) {
    close(fd);
    unlink(tmp.c_str());
    return s;
  };
  fchmod(fd, 0644);  // mkstemp makes 0600; checkpoints are shared read-only
  uint64_t n = header.size();
  absl::Status s = WriteAll(fd, &n, 8, tmp);
  if (s.ok()) s = WriteAll(fd, header.data(), header.size(), tmp);
  for (size_t i = 0; s.ok() && i < plan.size(); ++i) s = WriteData(fd, plan[i], tmp);
  if (!s.ok()) return fail(s);
  if (fsync(fd) != 0) return fail(Errno(tmp, "fsync failed"));
  if (close(fd) != 0) {
    absl::Status c = Errno(tmp, "close failed");
    unlink(tmp.c_str());
    return c;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status r = Errno(path, absl::StrCat("cannot rename ", tmp, " to it"));
    unlink(tmp.c_str());
    return r;
  }
  return absl::OkStatus();
}

}  // namespace baton
