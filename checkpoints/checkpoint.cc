// HDF5 checkpoint writer and reader (see checkpoint.h for the layout).
// Atomicity: everything goes to PATH.tmp; only a fully written, closed and
// fsync'ed file is renamed to PATH, and the directory is fsync'ed after.
#include "checkpoints/checkpoint.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoints/disk_room.h"
#include "checkpoints/h5.h"
#include "checkpoints/model_mismatch.h"

namespace baton {
namespace {

// ---- one dataset

// Writes `slab` (contiguous, on the CPU) into `dset` at `offset` (one
// entry per dim): here the whole tensor at offset 0 (dist_checkpoint_write.cc
// writes each rank's block the same way, collectively).
absl::Status WriteSlab(hid_t dset, const Tensor& slab, const Shape& offset, const std::string& file) {
  if (slab.numel() == 0) return absl::OkStatus();
  BATON_ASSIGN_OR_RETURN(H5Id file_space, SelectBlock(dset, offset, slab.shape(), file));
  H5Id mem_space = Dataspace(slab.shape());
  BATON_CHECK_H5(mem_space.get(), file);
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
  const Shape shape(dims.begin(), dims.end());
  BATON_RETURN_IF_ERROR(CheckStoredBytes(dset.get(), shape, dtype));  // before allocating that much
  Tensor t = Tensor::Empty(shape, dtype);
  if (t.numel() > 0)
    BATON_CHECK_H5(H5Dread(dset.get(), MemoryType(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()), file);
  return t;
}

absl::Status WriteContents(hid_t root, const std::string& tmp, const CheckpointData& data) {
  BATON_RETURN_IF_ERROR(WriteCheckpointAttrs(root, data.step, data.attrs, tmp));
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
  return absl::OkStatus();
}

// Creates PATH.tmp, reserves its room and writes it. A failure frees room
// before the close, so that HDF5's closing flush cannot fail in turn (a
// failed H5Fclose leaves a half-closed file that crashes HDF5 at exit).
absl::Status WriteFile(const std::string& path, const std::string& tmp, const CheckpointData& data,
                       const SaveRoom& room) {
  BATON_H5_ASSIGN(H5Id file, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, tmp);
  absl::Status s = ReserveFile(path, tmp, room);
  if (s.ok()) s = WriteContents(file.get(), tmp, data);
  if (!s.ok()) FreeRoomForClose(path, tmp, /*reserved=*/false);
  absl::Status closed = FromHdf5(file.Close(), "H5Fclose", tmp, __FILE__, __LINE__);
  return s.ok() ? closed : s;
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
  int64_t data_bytes = 0;
  for (const CheckpointTensor& ct : data.tensors) data_bytes += ct.tensor.defined() ? ct.tensor.nbytes() : 0;
  const SaveRoom room = CheckpointRoom(data_bytes, static_cast<int64_t>(data.tensors.size()), data.attrs);
  absl::Status s = PrepareRoom(path, room);
  if (s.ok()) s = WriteFile(path, tmp, data, room);
  FinishRoom(path, tmp, room, s.ok());
  if (s.ok()) s = FsyncPath(tmp, /*directory=*/false);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    s = absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  if (!s.ok()) {
    std::remove(tmp.c_str());
    if (absl::StartsWith(s.message(), "checkpoint " + path + ": ")) return s;
    return absl::Status(s.code(), absl::StrCat("checkpoint ", path, ": ", s.message()));
  }
  return FsyncPath(DirOf(path), /*directory=*/true);
}

absl::StatusOr<CheckpointData> ReadCheckpoint(const std::string& path) {
  Hdf5Init();
  BATON_RETURN_IF_ERROR(CheckCheckpointFile(path));
  BATON_ASSIGN_OR_RETURN(H5Id file, OpenCheckpointForRead(path, H5P_DEFAULT));
  hid_t root = file.get();
  CheckpointData data;
  data.source = path;
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(root, path, &data.step, &data.attrs));
  BATON_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDatasets(root, path));
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
  if (src == nullptr) {
    std::vector<std::string> names;
    for (const CheckpointTensor& t : data.tensors) names.push_back(t.name);
    return absl::NotFoundError(absl::StrCat("reading ", name, " from ", from, ": no such tensor", WhyMissing(name, names)));
  }
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
