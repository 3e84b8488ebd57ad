// HDF5 error conversion (see h5.h).
#include "checkpoints/h5.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/h5_layout_check.h"

namespace baton {
namespace {

// The innermost (most specific) description on HDF5's default error stack.
std::string InnermostHdf5Message() {
  std::string msg;
  auto walk = [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
    auto* s = static_cast<std::string*>(out);
    if (n == 0 && e->desc != nullptr) *s = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &msg);
  H5Eclear2(H5E_DEFAULT);
  for (char& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return msg.empty() ? "unknown HDF5 error" : msg;
}

}  // namespace

void Hdf5Init() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

absl::Status FromHdf5(int64_t code, const char* expr, const std::string& file, const char* src, int line) {
  if (code >= 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(expr, " failed on ", file, ": ", InnermostHdf5Message(), " (", src, ":", line, ")"));
}

// ---- shared by the single-process and the distributed checkpoint files

// ---- names and types

// Tensor names become HDF5 paths: "adam/m/layers.3.attn.wq" is dataset
// "layers.3.attn.wq" in group /adam/m (groups are created on the way).
absl::Status CheckName(const std::string& name) {
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    std::string part = name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..")
      return absl::InvalidArgumentError("empty, '.' or '..' component in the tensor name");
    if (slash == std::string::npos) return absl::OkStatus();
    start = slash + 1;
  }
}

// The file type a dtype is stored as (little-endian, IEEE), or an error.
absl::StatusOr<hid_t> FileType(DType t) {
  switch (t) {
    case DType::kF32: return H5T_IEEE_F32LE;
    case DType::kF64: return H5T_IEEE_F64LE;
    case DType::kI32: return H5T_STD_I32LE;
    default:
      return absl::InvalidArgumentError(absl::StrCat("dtype ", DTypeName(t), " is not supported (f32, f64, i32)"));
  }
}

hid_t MemoryType(DType t) {
  switch (t) {
    case DType::kF32: return H5T_NATIVE_FLOAT;
    case DType::kF64: return H5T_NATIVE_DOUBLE;
    case DType::kI32: return H5T_NATIVE_INT32;
    default: BATON_CHECK_MSG(false, DTypeName(t));
  }
  return H5I_INVALID_HID;
}

// The dtype of a stored dataset's type, or an error naming what it is.
absl::StatusOr<DType> DTypeOfFileType(hid_t type) {
  H5T_class_t cls = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return DType::kF32;
  if (cls == H5T_FLOAT && size == 8) return DType::kF64;
  if (cls == H5T_INTEGER && size == 4 && H5Tget_sign(type) == H5T_SGN_2) return DType::kI32;
  return absl::InvalidArgumentError(absl::StrCat("unsupported HDF5 type (class ", static_cast<int>(cls),
                                                 ", ", size, " bytes); expected f32, f64 or i32"));
}

H5Id Dataspace(const Shape& shape) {
  if (shape.empty()) return H5Id(H5Screate(H5S_SCALAR), H5Sclose);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  return H5Id(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
}

// ---- string attributes on the root group

absl::Status WriteStringAttr(hid_t obj, const std::string& key, const std::string& value, const std::string& file) {
  BATON_H5_ASSIGN(H5Id type, H5Tcopy(H5T_C_S1), H5Tclose, file);
  BATON_CHECK_H5(H5Tset_size(type.get(), H5T_VARIABLE), file);
  BATON_CHECK_H5(H5Tset_cset(type.get(), H5T_CSET_UTF8), file);
  BATON_H5_ASSIGN(H5Id space, H5Screate(H5S_SCALAR), H5Sclose, file);
  BATON_H5_ASSIGN(H5Id attr, H5Acreate2(obj, key.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                  H5Aclose, file);
  const char* p = value.c_str();  // embedded NULs would truncate; attrs are text
  BATON_CHECK_H5(H5Awrite(attr.get(), type.get(), &p), file);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadStringAttr(hid_t attr, const std::string& key, const std::string& file) {
  BATON_H5_ASSIGN(H5Id ftype, H5Aget_type(attr), H5Tclose, file);
  if (H5Tget_class(ftype.get()) != H5T_STRING)
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", file, ": attribute '", key, "' is not a string"));
  BATON_H5_ASSIGN(H5Id space, H5Aget_space(attr), H5Sclose, file);
  if (H5Sget_simple_extent_npoints(space.get()) != 1)
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", file, ": attribute '", key, "' is not one string"));
  if (H5Tis_variable_str(ftype.get()) > 0) {
    // Same cset as the file (UTF-8 to ASCII has no conversion path).
    BATON_H5_ASSIGN(H5Id mtype, H5Tcopy(ftype.get()), H5Tclose, file);
    char* p = nullptr;
    BATON_CHECK_H5(H5Aread(attr, mtype.get(), &p), file);
    std::string out = p ? p : "";
    H5free_memory(p);
    return out;
  }
  size_t size = H5Tget_size(ftype.get());  // fixed-length, maybe not NUL-terminated
  if (const hsize_t stored = H5Aget_storage_size(attr); size == 0 || size != stored)
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", file, ": attribute '", key, "' is damaged (", size,
                                                   " bytes by its type, ", stored, " stored)"));
  std::string out(size, '\0');
  BATON_CHECK_H5(H5Aread(attr, ftype.get(), out.data()), file);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// ---- durability

absl::Status FsyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  int r = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (r != 0) return absl::InternalError(absl::StrCat("fsync ", path, ": ", std::strerror(err)));
  return absl::OkStatus();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

absl::Status CheckStoredBytes(hid_t dset, const Shape& shape, DType dtype) {
  uint64_t need = DTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && need > UINT64_MAX / static_cast<uint64_t>(d))) need = UINT64_MAX;
    else need *= static_cast<uint64_t>(d);
  }
  const uint64_t stored = H5Dget_storage_size(dset);
  if (stored == need) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("damaged: shape ", ShapeString(shape), " of ", DTypeName(dtype), " stored in ", stored, " bytes"));
}

absl::StatusOr<H5Id> SelectBlock(hid_t dset, const Shape& start, const Shape& count, const std::string& file) {
  H5Id space(H5Dget_space(dset), H5Sclose);
  BATON_CHECK_H5(space.get(), file);
  if (!count.empty()) {
    std::vector<hsize_t> s(start.begin(), start.end()), c(count.begin(), count.end());
    BATON_CHECK_H5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, s.data(), nullptr, c.data(), nullptr), file);
  }
  return space;
}

// ---- the checkpoint file's root

absl::Status WriteCheckpointAttrs(hid_t root, int64_t step, const std::map<std::string, std::string>& attrs,
                                  const std::string& file) {
  for (const auto& [key, value] : attrs) {  // before anything is written
    if (key == kCheckpointStepAttr || key == kCheckpointFormatAttr)
      return absl::InvalidArgumentError(absl::StrCat("attribute name '", key, "' is reserved by the checkpoint format"));
  }
  BATON_H5_ASSIGN(H5Id space, H5Screate(H5S_SCALAR), H5Sclose, file);
  BATON_H5_ASSIGN(H5Id a, H5Acreate2(root, kCheckpointStepAttr, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                  H5Aclose, file);
  BATON_CHECK_H5(H5Awrite(a.get(), H5T_NATIVE_INT64, &step), file);
  BATON_RETURN_IF_ERROR(WriteStringAttr(root, kCheckpointFormatAttr, kCheckpointFormat, file));
  for (const auto& [key, value] : attrs) BATON_RETURN_IF_ERROR(WriteStringAttr(root, key, value, file));
  return absl::OkStatus();
}

absl::Status ReadCheckpointAttrs(hid_t root, const std::string& file, int64_t* step,
                                 std::map<std::string, std::string>* attrs) {
  if (H5Aexists(root, kCheckpointStepAttr) <= 0 || H5Aexists(root, kCheckpointFormatAttr) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", file, ": an HDF5 file but not a baton checkpoint (no 'step'/'format' attribute)"));
  }
  {
    BATON_H5_ASSIGN(H5Id a, H5Aopen(root, kCheckpointStepAttr, H5P_DEFAULT), H5Aclose, file);
    BATON_CHECK_H5(H5Aread(a.get(), H5T_NATIVE_INT64, step), file);
  }
  // Names first (iteration callbacks cannot return a Status).
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  BATON_CHECK_H5(H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, nullptr, cb, &names), file);
  attrs->clear();
  for (const std::string& key : names) {
    if (key == kCheckpointStepAttr) continue;
    BATON_H5_ASSIGN(H5Id a, H5Aopen(root, key.c_str(), H5P_DEFAULT), H5Aclose, file);
    BATON_ASSIGN_OR_RETURN(std::string value, ReadStringAttr(a.get(), key, file));
    if (key == kCheckpointFormatAttr) {
      if (value != kCheckpointFormat)
        return absl::InvalidArgumentError(absl::StrCat("checkpoint ", file, ": format '", value, "', expected '",
                                                       kCheckpointFormat, "'"));
      continue;
    }
    (*attrs)[key] = std::move(value);
  }
  return absl::OkStatus();
}

absl::Status CheckCheckpointFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    std::string msg = absl::StrCat("checkpoint ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
  }
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": not a regular file"));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": not an HDF5 file"));
  }
  return CheckHdf5Layout(path);  // HDF5 1.10 trusts sizes on disk: a damaged file could hang or exhaust it
}

absl::StatusOr<H5Id> OpenCheckpointForRead(const std::string& path, hid_t fapl) {
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
  if (id >= 0) return H5Id(id, H5Fclose);
  return absl::InvalidArgumentError(
      absl::StrCat("checkpoint ", path, ": a truncated or damaged HDF5 file (", InnermostHdf5Message(), ")"));
}

absl::StatusOr<std::vector<std::string>> ListDatasets(hid_t root, const std::string& file) {
  std::vector<std::string> names;
  auto cb = [](hid_t group, const char* name, const H5L_info_t* info, void* out) -> herr_t {
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);  // H5Oget_info's signature differs across 1.10/1.12
    if (obj < 0) return -1;
    if (H5Iget_type(obj) == H5I_DATASET) static_cast<std::vector<std::string>*>(out)->push_back(name);
    H5Oclose(obj);
    return 0;
  };
  BATON_CHECK_H5(H5Lvisit(root, H5_INDEX_NAME, H5_ITER_INC, cb, &names), file);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace baton
