// Collective checkpoint writer and per-rank reader (see dist_checkpoint.h).
#include "checkpoints/dist_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/h5.h"

namespace baton {
namespace {

// What a rank holds of one tensor, as every rank learns it.
struct Entry {
  std::string name;
  DType dtype = DType::kF32;
  Shape full, local;
  int dim = -1;
  int64_t offset = 0;
  int rank = 0;   // who holds it
  int index = 0;  // its position in that rank's shard list
};

// ---- agreement: an error on one rank is an error on every rank

absl::Status Agree(MPI_Comm comm, const absl::Status& mine) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int bad = mine.ok() ? size : rank, first = size;
  MPI_Allreduce(&bad, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return absl::OkStatus();
  int code = static_cast<int>(mine.code());
  std::string msg(mine.message());
  int len = static_cast<int>(msg.size());
  MPI_Bcast(&code, 1, MPI_INT, first, comm);
  MPI_Bcast(&len, 1, MPI_INT, first, comm);
  msg.resize(len);
  MPI_Bcast(msg.data(), len, MPI_CHAR, first, comm);
  if (rank != first) msg = absl::StrCat(msg, " (on rank ", first, ")");
  return absl::Status(static_cast<absl::StatusCode>(code), msg);
}

// ---- metadata exchange

void PutInt(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
int64_t GetInt(const char*& p) {
  int64_t v;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return v;
}
void PutShape(std::string& out, const Shape& s) {
  PutInt(out, static_cast<int64_t>(s.size()));
  for (int64_t d : s) PutInt(out, d);
}
Shape GetShape(const char*& p) {
  Shape s(GetInt(p));
  for (int64_t& d : s) d = GetInt(p);
  return s;
}

std::vector<Entry> ExchangeEntries(MPI_Comm comm, const std::vector<TensorShard>& shards) {
  std::string mine;
  PutInt(mine, static_cast<int64_t>(shards.size()));
  for (const TensorShard& s : shards) {
    PutInt(mine, static_cast<int64_t>(s.name.size()));
    mine += s.name;
    PutInt(mine, static_cast<int64_t>(s.local.dtype()));
    PutShape(mine, s.full_shape);
    PutShape(mine, s.local.shape());
    PutInt(mine, s.shard_dim);
    PutInt(mine, s.offset);
  }
  int size = 1;
  MPI_Comm_size(comm, &size);
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size), displs(size);
  MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::string all(total, '\0');
  MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, comm);
  std::vector<Entry> out;
  for (int r = 0; r < size; ++r) {
    const char* p = all.data() + displs[r];
    const int64_t n = GetInt(p);
    for (int64_t i = 0; i < n; ++i) {
      Entry e;
      const int64_t name_len = GetInt(p);
      e.name.assign(p, name_len);
      p += name_len;
      e.dtype = static_cast<DType>(GetInt(p));
      e.full = GetShape(p);
      e.local = GetShape(p);
      e.dim = static_cast<int>(GetInt(p));
      e.offset = GetInt(p);
      e.rank = r;
      e.index = static_cast<int>(i);
      out.push_back(std::move(e));
    }
  }
  return out;
}

// Groups entries by tensor name (sorted) after checking that they tile
// every tensor exactly once. Every rank runs it on the same list.
absl::StatusOr<std::map<std::string, std::vector<Entry>>> Tile(const std::vector<Entry>& entries,
                                                              const std::string& path) {
  std::map<std::string, std::vector<Entry>> by_name;
  for (const Entry& e : entries) by_name[e.name].push_back(e);
  for (auto& [name, list] : by_name) {
    auto bad = [&](auto... parts) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": tensor ", name, ": ", parts...));
    };
    BATON_RETURN_IF_ERROR(CheckName(name));
    const Entry& first = list[0];
    for (const Entry& e : list) {
      if (e.full != first.full || e.dtype != first.dtype) {
        return bad("ranks ", first.rank, " and ", e.rank, " disagree on its shape or dtype (",
                   ShapeString(first.full), " ", DTypeName(first.dtype), " vs ", ShapeString(e.full), " ",
                   DTypeName(e.dtype), ")");
      }
      if (e.dim >= static_cast<int>(e.full.size())) return bad("rank ", e.rank, " splits it along dim ", e.dim);
      Shape expect = e.full;
      if (e.dim >= 0) expect[e.dim] = e.local[e.dim < static_cast<int>(e.local.size()) ? e.dim : 0];
      if (e.local != expect || (e.dim >= 0 && (e.offset < 0 || e.offset + e.local[e.dim] > e.full[e.dim]))) {
        return bad("rank ", e.rank, "'s slice ", ShapeString(e.local), " at offset ", e.offset, " along dim ", e.dim,
                   " does not fit ", ShapeString(e.full));
      }
    }
    if (list.size() == 1 && first.dim < 0) continue;
    const int dim = first.dim;
    for (const Entry& e : list) {
      if (e.dim != dim || dim < 0) return bad("written by ", list.size(), " ranks that do not split it along one dim");
    }
    std::sort(list.begin(), list.end(), [](const Entry& a, const Entry& b) { return a.offset < b.offset; });
    int64_t at = 0;
    for (const Entry& e : list) {
      if (e.offset != at) {
        return bad(e.offset < at ? "slices overlap" : "slices leave a gap", " at ", std::min(at, e.offset),
                   " along dim ", dim, " (rank ", e.rank, ")");
      }
      at += e.local[dim];
    }
    if (at != first.full[dim]) return bad("slices cover ", at, " of ", first.full[dim], " along dim ", dim);
  }
  return by_name;
}

// ---- hyperslabs

// The file dataspace of `dset` restricted to a slice (dim < 0: all of it).
absl::StatusOr<H5Id> SliceSpace(hid_t dset, const Shape& full, const Shape& local, int dim, int64_t offset,
                                const std::string& file) {
  H5Id space(H5Dget_space(dset), H5Sclose);
  BATON_CHECK_H5(space.get(), file);
  if (dim >= 0 && !full.empty()) {
    std::vector<hsize_t> start(full.size(), 0), count(local.begin(), local.end());
    start[dim] = static_cast<hsize_t>(offset);
    BATON_CHECK_H5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
                   file);
  }
  return space;
}

// Copies slab (a slice along dim at offset) into the full tensor.
void PlaceSlab(const Tensor& slab, int dim, int64_t offset, Tensor& full) {
  if (dim < 0) {
    std::memcpy(full.raw(), slab.raw(), slab.nbytes());
    return;
  }
  const size_t elem = DTypeSize(full.dtype());
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= full.dim(i);
  for (int i = dim + 1; i < full.rank(); ++i) inner *= full.dim(i);
  const int64_t rows = slab.dim(dim);
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(static_cast<char*>(full.raw()) + ((o * full.dim(dim) + offset) * inner) * elem,
                static_cast<const char*>(slab.raw()) + (o * rows * inner) * elem, rows * inner * elem);
  }
}

absl::Status WriteRootAttrs(hid_t root, int64_t step, const std::map<std::string, std::string>& attrs,
                            const std::string& file) {
  BATON_H5_ASSIGN(H5Id space, H5Screate(H5S_SCALAR), H5Sclose, file);
  BATON_H5_ASSIGN(H5Id a, H5Acreate2(root, kCheckpointStepAttr, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                  H5Aclose, file);
  BATON_CHECK_H5(H5Awrite(a.get(), H5T_NATIVE_INT64, &step), file);
  BATON_RETURN_IF_ERROR(WriteStringAttr(root, kCheckpointFormatAttr, kCheckpointFormat, file));
  for (const auto& [key, value] : attrs) {
    if (key == kCheckpointStepAttr || key == kCheckpointFormatAttr)
      return absl::InvalidArgumentError(absl::StrCat("attribute name '", key, "' is reserved by the checkpoint format"));
    BATON_RETURN_IF_ERROR(WriteStringAttr(root, key, value, file));
  }
  return absl::OkStatus();
}

// Rank 0's step and attributes on every rank (parallel HDF5 metadata writes
// must be identical on all ranks).
void BroadcastAttrs(MPI_Comm comm, int64_t* step, std::map<std::string, std::string>* attrs) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::string blob;
  if (rank == 0) {
    for (const auto& [k, v] : *attrs) {
      PutInt(blob, static_cast<int64_t>(k.size()));
      blob += k;
      PutInt(blob, static_cast<int64_t>(v.size()));
      blob += v;
    }
  }
  int64_t head[2] = {*step, static_cast<int64_t>(blob.size())};
  MPI_Bcast(head, 2, MPI_INT64_T, 0, comm);
  *step = head[0];
  blob.resize(head[1]);
  MPI_Bcast(blob.data(), static_cast<int>(blob.size()), MPI_CHAR, 0, comm);
  if (rank == 0) return;
  attrs->clear();
  for (const char* p = blob.data(); p < blob.data() + blob.size();) {
    const int64_t kl = GetInt(p);
    std::string k(p, kl);
    p += kl;
    const int64_t vl = GetInt(p);
    (*attrs)[k] = std::string(p, vl);
    p += vl;
  }
}

#ifdef H5_HAVE_PARALLEL
// Every rank: create the file and datasets together, write own slabs, close together.
absl::Status WriteParallel(MPI_Comm comm, const std::string& tmp, int64_t step,
                           const std::map<std::string, std::string>& attrs,
                           const std::map<std::string, std::vector<Entry>>& tensors,
                           const std::vector<TensorShard>& shards) {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  BATON_CHECK_H5(fapl.get(), tmp);
  BATON_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), tmp);
  BATON_H5_ASSIGN(H5Id file, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, tmp);
  BATON_RETURN_IF_ERROR(WriteRootAttrs(file.get(), step, attrs, tmp));
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  BATON_CHECK_H5(lcpl.get(), tmp);
  BATON_CHECK_H5(H5Pset_create_intermediate_group(lcpl.get(), 1), tmp);
  std::map<std::string, H5Id> dsets;
  for (const auto& [name, list] : tensors) {  // collective: same order everywhere
    BATON_ASSIGN_OR_RETURN(hid_t ftype, FileType(list[0].dtype));
    H5Id space = Dataspace(list[0].full);
    BATON_CHECK_H5(space.get(), tmp);
    BATON_H5_ASSIGN(H5Id d, H5Dcreate2(file.get(), name.c_str(), ftype, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
                    H5Dclose, tmp);
    dsets.emplace(name, std::move(d));
  }
  absl::Status local;  // independent writes: a failure here must not skip the collective close
  for (const TensorShard& s : shards) {
    if (s.local.numel() == 0) continue;
    hid_t d = dsets.at(s.name).get();
    absl::StatusOr<H5Id> fspace = SliceSpace(d, s.full_shape, s.local.shape(), s.shard_dim, s.offset, tmp);
    if (!fspace.ok()) {
      local = fspace.status();
      break;
    }
    H5Id mspace = Dataspace(s.local.shape());
    absl::Status st = FromHdf5(H5Dwrite(d, MemoryType(s.local.dtype()), mspace.get(), fspace->get(), H5P_DEFAULT,
                                        s.local.raw()),
                               "H5Dwrite", tmp, __FILE__, __LINE__);
    if (!st.ok()) {
      local = absl::Status(st.code(), absl::StrCat("writing ", s.name, ": ", st.message()));
      break;
    }
  }
  dsets.clear();
  BATON_CHECK_H5(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), tmp);
  BATON_CHECK_H5(file.Close(), tmp);
  return local;
}
#endif

// Serial HDF5: rank 0 assembles every tensor from the slices and writes alone.
[[maybe_unused]] absl::Status WriteGathered(MPI_Comm comm, const std::string& path, int64_t step,
                           const std::map<std::string, std::string>& attrs,
                           const std::map<std::string, std::vector<Entry>>& tensors,
                           const std::vector<TensorShard>& shards) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) {
    for (const auto& [name, list] : tensors) {
      for (const Entry& e : list) {
        if (e.rank != rank) continue;
        const Tensor& t = shards[e.index].local;
        MPI_Send(t.raw(), static_cast<int>(t.nbytes()), MPI_BYTE, 0, 0, comm);
      }
    }
    return absl::OkStatus();
  }
  CheckpointData data;
  data.step = step;
  data.attrs = attrs;
  for (const auto& [name, list] : tensors) {
    Tensor full = Tensor::Empty(list[0].full, list[0].dtype);
    for (const Entry& e : list) {
      Tensor slab = e.rank == 0 ? shards[e.index].local : Tensor::Empty(e.local, e.dtype);
      if (e.rank != 0) {
        MPI_Recv(slab.raw(), static_cast<int>(slab.nbytes()), MPI_BYTE, e.rank, 0, comm, MPI_STATUS_IGNORE);
      }
      PlaceSlab(slab, e.dim, e.offset, full);
    }
    data.tensors.push_back({name, std::move(full)});
  }
  return WriteCheckpoint(path, data);
}

// ---- reading

bool LinkExists(hid_t file, const std::string& name) {
  for (size_t slash = name.find('/'); ; slash = name.find('/', slash + 1)) {
    const std::string prefix = name.substr(0, slash);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) return true;
  }
}

absl::Status ReadAttrs(hid_t root, const std::string& path, int64_t* step, std::map<std::string, std::string>* attrs) {
  if (H5Aexists(root, kCheckpointStepAttr) <= 0 || H5Aexists(root, kCheckpointFormatAttr) <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", path, ": an HDF5 file but not a baton checkpoint (no 'step'/'format' attribute)"));
  {
    BATON_H5_ASSIGN(H5Id a, H5Aopen(root, kCheckpointStepAttr, H5P_DEFAULT), H5Aclose, path);
    BATON_CHECK_H5(H5Aread(a.get(), H5T_NATIVE_INT64, step), path);
  }
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  BATON_CHECK_H5(H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, nullptr, cb, &names), path);
  attrs->clear();
  for (const std::string& key : names) {
    if (key == kCheckpointStepAttr) continue;
    BATON_H5_ASSIGN(H5Id a, H5Aopen(root, key.c_str(), H5P_DEFAULT), H5Aclose, path);
    BATON_ASSIGN_OR_RETURN(std::string value, ReadStringAttr(a.get(), key, path));
    if (key == kCheckpointFormatAttr) {
      if (value != kCheckpointFormat)
        return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": format '", value, "', expected '",
                                                       kCheckpointFormat, "'"));
      continue;
    }
    (*attrs)[key] = std::move(value);
  }
  return absl::OkStatus();
}

absl::Status ReadShard(hid_t file, const std::string& path, TensorShard& s) {
  auto bad = [&](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("reading ", s.name, " from ", path, ": ", parts...));
  };
  if (!LinkExists(file, s.name)) return absl::NotFoundError(absl::StrCat("reading ", s.name, " from ", path, ": no such tensor"));
  BATON_H5_ASSIGN(H5Id d, H5Dopen2(file, s.name.c_str(), H5P_DEFAULT), H5Dclose, path);
  BATON_H5_ASSIGN(H5Id type, H5Dget_type(d.get()), H5Tclose, path);
  BATON_ASSIGN_OR_RETURN(DType dtype, DTypeOfFileType(type.get()));
  BATON_H5_ASSIGN(H5Id space, H5Dget_space(d.get()), H5Sclose, path);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  BATON_CHECK_H5(rank, path);
  std::vector<hsize_t> dims(rank);
  BATON_CHECK_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path);
  const Shape file_shape(dims.begin(), dims.end());
  if (file_shape != s.full_shape) return bad("shape ", ShapeString(file_shape), " != expected ", ShapeString(s.full_shape));
  if (dtype != s.local.dtype()) return bad("dtype ", DTypeName(dtype), " != expected ", DTypeName(s.local.dtype()));
  Shape expect = s.full_shape;
  if (s.shard_dim >= 0) expect[s.shard_dim] = s.local.dim(s.shard_dim);
  if (s.local.shape() != expect || (s.shard_dim >= 0 && s.offset + s.local.dim(s.shard_dim) > s.full_shape[s.shard_dim]))
    return bad("slice ", ShapeString(s.local.shape()), " at ", s.offset, " along dim ", s.shard_dim, " does not fit");
  if (!s.local.is_contiguous() || s.local.device() != Device::kCpu) return bad("destination must be contiguous on the CPU");
  if (s.local.numel() == 0) return absl::OkStatus();
  BATON_ASSIGN_OR_RETURN(H5Id fspace, SliceSpace(d.get(), s.full_shape, s.local.shape(), s.shard_dim, s.offset, path));
  H5Id mspace = Dataspace(s.local.shape());
  BATON_CHECK_H5(H5Dread(d.get(), MemoryType(dtype), mspace.get(), fspace.get(), H5P_DEFAULT, s.local.raw()), path);
  return absl::OkStatus();
}

absl::Status ReadLocal(const std::string& path, std::vector<TensorShard>& shards, int64_t* step,
                       std::map<std::string, std::string>* attrs) {
  Hdf5Init();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    std::string msg = absl::StrCat("checkpoint ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": not an HDF5 file"));
  }
  BATON_H5_ASSIGN(H5Id file, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path);
  BATON_RETURN_IF_ERROR(ReadAttrs(file.get(), path, step, attrs));
  for (TensorShard& s : shards) BATON_RETURN_IF_ERROR(ReadShard(file.get(), path, s));
  return absl::OkStatus();
}

}  // namespace

const char* DistributedCheckpointIo() {
#ifdef H5_HAVE_PARALLEL
  return "parallel HDF5 (MPI-IO)";
#else
  return "serial HDF5: slices gathered to rank 0";
#endif
}

absl::Status WriteShardedCheckpoint(MPI_Comm comm, const std::string& path, int64_t step,
                                    const std::vector<TensorShard>& shards,
                                    const std::map<std::string, std::string>& attrs) {
  Hdf5Init();
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  absl::Status ok;
  for (const TensorShard& s : shards) {
    if (!s.local.defined() || s.local.device() != Device::kCpu || !s.local.is_contiguous()) {
      ok = absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": tensor ", s.name,
                                                   ": the slice must be a contiguous CPU tensor"));
      break;
    }
    if (!FileType(s.local.dtype()).ok()) {
      ok = absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": tensor ", s.name, ": dtype ",
                                                   DTypeName(s.local.dtype()), " is not supported (f32, f64, i32)"));
      break;
    }
  }
  BATON_RETURN_IF_ERROR(Agree(comm, ok));
  const std::vector<Entry> entries = ExchangeEntries(comm, shards);
  BATON_ASSIGN_OR_RETURN(auto tensors, Tile(entries, path));  // the same verdict on every rank
  int64_t the_step = step;
  std::map<std::string, std::string> the_attrs = attrs;
  BroadcastAttrs(comm, &the_step, &the_attrs);
  const std::string tmp = path + ".tmp";
#ifdef H5_HAVE_PARALLEL
  if (rank == 0) std::remove(tmp.c_str());  // a stale one from a crashed save
  MPI_Barrier(comm);
  absl::Status st = Agree(comm, WriteParallel(comm, tmp, the_step, the_attrs, tensors, shards));
  if (st.ok() && rank == 0) {  // every rank closed the file: make it durable and give it its name
    st = FsyncPath(tmp, /*directory=*/false);
    if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
      st = absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", std::strerror(errno)));
    if (st.ok()) st = FsyncPath(DirOf(path), /*directory=*/true);
  }
  if (!st.ok() && rank == 0) std::remove(tmp.c_str());
  st = Agree(comm, st);
  if (!st.ok() && !absl::StrContains(st.message(), path)) {
    return absl::Status(st.code(), absl::StrCat("checkpoint ", path, ": ", st.message()));
  }
  return st;
#else
  return Agree(comm, WriteGathered(comm, path, the_step, the_attrs, tensors, shards));
#endif
}

absl::Status ReadShardedCheckpoint(MPI_Comm comm, const std::string& path, std::vector<TensorShard>& shards,
                                   int64_t* step, std::map<std::string, std::string>* attrs) {
  return Agree(comm, ReadLocal(path, shards, step, attrs));
}

}  // namespace baton
