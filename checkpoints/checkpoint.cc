// HDF5 checkpoint writer and reader (see checkpoint.h for the layout).
// Atomicity: everything goes to PATH.tmp; only a fully written, closed and
// fsync'ed file is renamed to PATH, and the directory is fsync'ed after.
#include "checkpoints/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "checkpoints/h5.h"

namespace baton {
namespace {

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

// ---- one dataset

// Writes `slab` (contiguous, on the CPU) into `dset` at `offset` (one
// entry per dim). Today the slab is the whole tensor at offset 0; the
// parallel writer will pass each rank's slice and a collective transfer list.
absl::Status WriteSlab(hid_t dset, const Tensor& slab, const Shape& offset, const std::string& file) {
  if (slab.numel() == 0) return absl::OkStatus();
  H5Id file_space(H5Dget_space(dset), H5Sclose);
  BATON_CHECK_H5(file_space.get(), file);
  H5Id mem_space = Dataspace(slab.shape());
  BATON_CHECK_H5(mem_space.get(), file);
  if (slab.rank() > 0) {
    std::vector<hsize_t> start(offset.begin(), offset.end()), count(slab.shape().begin(), slab.shape().end());
    BATON_CHECK_H5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
                   file);
  }
  BATON_CHECK_H5(H5Dwrite(dset, MemoryType(slab.dtype()), mem_space.get(), file_space.get(), H5P_DEFAULT, slab.raw()),
                 file);
  return absl::OkStatus();
}

absl::Status WriteTensor(hid_t file_id, const CheckpointTensor& ct, const std::string& file) {
  const Tensor& t = ct.tensor;
  if (!t.defined()) return absl::InvalidArgumentError("tensor is undefined");
  if (t.device() != Device::kCpu)
    return absl::InvalidArgumentError(absl::StrCat("tensor is on ", DeviceName(t.device()), "; copy it to the CPU first"));
  BATON_ASSIGN_OR_RETURN(hid_t file_type, FileType(t.dtype()));
  BATON_RETURN_IF_ERROR(CheckName(ct.name));

  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  BATON_CHECK_H5(lcpl.get(), file);
  BATON_CHECK_H5(H5Pset_create_intermediate_group(lcpl.get(), 1), file);
  H5Id space = Dataspace(t.shape());
  BATON_CHECK_H5(space.get(), file);
  BATON_H5_ASSIGN(H5Id dset, H5Dcreate2(file_id, ct.name.c_str(), file_type, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
                  H5Dclose, file);
  Tensor contiguous = t.is_contiguous() ? t : t.Clone();
  BATON_RETURN_IF_ERROR(WriteSlab(dset.get(), contiguous, Shape(t.rank(), 0), file));
  BATON_CHECK_H5(dset.Close(), file);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ReadTensor(hid_t file_id, const std::string& name, const std::string& file) {
  BATON_H5_ASSIGN(H5Id dset, H5Dopen2(file_id, name.c_str(), H5P_DEFAULT), H5Dclose, file);
  BATON_H5_ASSIGN(H5Id type, H5Dget_type(dset.get()), H5Tclose, file);
  BATON_ASSIGN_OR_RETURN(DType dtype, DTypeOfFileType(type.get()));
  BATON_H5_ASSIGN(H5Id space, H5Dget_space(dset.get()), H5Sclose, file);
  int rank = H5Sget_simple_extent_ndims(space.get());
  BATON_CHECK_H5(rank, file);
  std::vector<hsize_t> dims(rank);
  BATON_CHECK_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), file);
  Tensor t = Tensor::Empty(Shape(dims.begin(), dims.end()), dtype);
  if (t.numel() > 0)
    BATON_CHECK_H5(H5Dread(dset.get(), MemoryType(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()), file);
  return t;
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

absl::Status WriteFile(const std::string& tmp, const CheckpointData& data) {
  BATON_H5_ASSIGN(H5Id file, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, tmp);
  hid_t root = file.get();
  BATON_H5_ASSIGN(H5Id space, H5Screate(H5S_SCALAR), H5Sclose, tmp);
  BATON_H5_ASSIGN(H5Id step, H5Acreate2(root, kCheckpointStepAttr, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                  H5Aclose, tmp);
  BATON_CHECK_H5(H5Awrite(step.get(), H5T_NATIVE_INT64, &data.step), tmp);
  BATON_RETURN_IF_ERROR(WriteStringAttr(root, kCheckpointFormatAttr, kCheckpointFormat, tmp));
  for (const auto& [key, value] : data.attrs) {
    if (key == kCheckpointStepAttr || key == kCheckpointFormatAttr)
      return absl::InvalidArgumentError(absl::StrCat("attribute name '", key, "' is reserved by the checkpoint format"));
    BATON_RETURN_IF_ERROR(WriteStringAttr(root, key, value, tmp));
  }
  std::set<std::string> seen;
  for (const CheckpointTensor& ct : data.tensors) {
    absl::Status s = seen.insert(ct.name).second
                         ? WriteTensor(root, ct, tmp)
                         : absl::InvalidArgumentError("the name appears twice");
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("writing ", ct.name, " to ", tmp, ": ", s.message()));
    }
  }
  BATON_CHECK_H5(H5Fflush(root, H5F_SCOPE_GLOBAL), tmp);
  BATON_CHECK_H5(file.Close(), tmp);
  return absl::OkStatus();
}

}  // namespace

// ---- public API

const CheckpointTensor* CheckpointData::Find(const std::string& name) const {
  for (const CheckpointTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::Status WriteCheckpoint(const std::string& path, const CheckpointData& data) {
  Hdf5Init();
  const std::string tmp = path + ".tmp";
  std::remove(tmp.c_str());  // a stale one from a crashed save
  absl::Status s = WriteFile(tmp, data);
  if (s.ok()) s = FsyncPath(tmp, /*directory=*/false);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    s = absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return absl::Status(s.code(), absl::StrCat("checkpoint ", path, ": ", s.message()));
  }
  return FsyncPath(DirOf(path), /*directory=*/true);
}

absl::StatusOr<CheckpointData> ReadCheckpoint(const std::string& path) {
  Hdf5Init();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    std::string msg = absl::StrCat("checkpoint ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
  }
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": not a regular file"));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": not an HDF5 file"));
  }
  BATON_H5_ASSIGN(H5Id file, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path);
  hid_t root = file.get();
  if (H5Aexists(root, kCheckpointStepAttr) <= 0 || H5Aexists(root, kCheckpointFormatAttr) <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", path, ": an HDF5 file but not a baton checkpoint (no 'step'/'format' attribute)"));

  CheckpointData data;
  data.source = path;
  {
    BATON_H5_ASSIGN(H5Id step, H5Aopen(root, kCheckpointStepAttr, H5P_DEFAULT), H5Aclose, path);
    BATON_CHECK_H5(H5Aread(step.get(), H5T_NATIVE_INT64, &data.step), path);
  }
  // Attribute names first (iteration callbacks cannot return a Status).
  std::vector<std::string> attr_names;
  auto attr_cb = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  BATON_CHECK_H5(H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, nullptr, attr_cb, &attr_names), path);
  for (const std::string& key : attr_names) {
    if (key == kCheckpointStepAttr) continue;
    BATON_H5_ASSIGN(H5Id attr, H5Aopen(root, key.c_str(), H5P_DEFAULT), H5Aclose, path);
    BATON_ASSIGN_OR_RETURN(std::string value, ReadStringAttr(attr.get(), key, path));
    if (key == kCheckpointFormatAttr) {
      if (value != kCheckpointFormat)
        return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": format '", value, "', expected '",
                                                       kCheckpointFormat, "'"));
      continue;
    }
    data.attrs[key] = std::move(value);
  }
  // Every dataset, at any depth.
  std::vector<std::string> names;
  auto link_cb = [](hid_t group, const char* name, const H5L_info_t* info, void* out) -> herr_t {
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) return -1;
    if (H5Iget_type(obj) == H5I_DATASET) static_cast<std::vector<std::string>*>(out)->push_back(name);
    H5Oclose(obj);
    return 0;
  };
  BATON_CHECK_H5(H5Lvisit(root, H5_INDEX_NAME, H5_ITER_INC, link_cb, &names), path);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    absl::StatusOr<Tensor> t = ReadTensor(root, name, path);
    if (!t.ok())
      return absl::Status(t.status().code(), absl::StrCat("reading ", name, " from ", path, ": ", t.status().message()));
    data.tensors.push_back({name, std::move(*t)});
  }
  return data;
}

absl::Status CopyInto(const CheckpointData& data, const std::string& name, Tensor& dst) {
  const std::string from = data.source.empty() ? "checkpoint data" : data.source;
  const CheckpointTensor* src = data.Find(name);
  if (src == nullptr) return absl::NotFoundError(absl::StrCat("reading ", name, " from ", from, ": no such tensor"));
  auto bad = [&](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("reading ", name, " from ", from, ": ", parts...));
  };
  if (src->tensor.shape() != dst.shape())
    return bad("shape ", ShapeString(src->tensor.shape()), " != expected ", ShapeString(dst.shape()));
  if (src->tensor.dtype() != dst.dtype())
    return bad("dtype ", DTypeName(src->tensor.dtype()), " != expected ", DTypeName(dst.dtype()));
  if (!dst.is_contiguous()) return bad("destination ", dst.DebugString(), " must be contiguous");
  dst.CopyFrom(src->tensor);  // a device destination gets one host-to-device copy
  return absl::OkStatus();
}

}  // namespace baton
