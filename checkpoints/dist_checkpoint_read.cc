// The collective checkpoint reader and lister (see dist_checkpoint.h).
// Parallel HDF5 requires every rank to make the same metadata calls (open,
// close) in the same order: the ranks first agree on the union of the
// tensor names they read, walk it sorted, check their destinations
// (agreed), and record transfer errors instead of returning early, so that
// no rank skips a collective call. Metadata calls see the same file on
// every rank, so they fail alike.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/collective_transfer.h"
#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/h5.h"
#include "checkpoints/model_mismatch.h"
#include "checkpoints/mpi_blobs.h"
#include "checkpoints/shard_tiling.h"

namespace baton {
namespace {

bool LinkExists(hid_t file, const std::string& name) {
  for (size_t slash = name.find('/');; slash = name.find('/', slash + 1)) {
    const std::string prefix = name.substr(0, slash);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (slash == std::string::npos) return true;
  }
}

// A dataset's dtype and shape as the file has them.
absl::Status DatasetInfo(hid_t dset, const std::string& file, DType* dtype, Shape* shape) {
  BATON_H5_ASSIGN(H5Id type, H5Dget_type(dset), H5Tclose, file);
  BATON_ASSIGN_OR_RETURN(*dtype, DTypeOfFileType(type.get()));
  BATON_H5_ASSIGN(H5Id space, H5Dget_space(dset), H5Sclose, file);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  BATON_CHECK_H5(rank, file);
  std::vector<hsize_t> dims(rank);
  BATON_CHECK_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), file);
  *shape = Shape(dims.begin(), dims.end());
  return CheckStoredBytes(dset, *shape, *dtype);
}

// A read destination checked against the file's dataset.
absl::Status CheckDestination(const TensorShard& s, const std::string& path, DType dtype, const Shape& shape) {
  auto bad = [&](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("reading ", s.name, " from ", path, ": ", parts...));
  };
  if (!s.local.defined()) return bad("the destination is undefined");
  if (shape != s.full_shape) return bad("shape ", ShapeString(shape), " != expected ", ShapeString(s.full_shape));
  if (dtype != s.local.dtype()) return bad("dtype ", DTypeName(dtype), " != expected ", DTypeName(s.local.dtype()));
  if (std::string p = SliceProblem(s.full_shape, s.local.shape(), s.shard_dim, s.offset); !p.empty()) return bad(p);
  if (!s.local.is_contiguous() || s.local.device() != Device::kCpu)
    return bad("the destination must be a contiguous CPU tensor (it is ", s.local.DebugString(), ")");
  return absl::OkStatus();
}

// NotFound naming the tensor, the file and why the file may lack it;
// `names` caches the file's dataset names (listed at the first miss).
absl::Status NoSuchTensor(hid_t file, const std::string& path, const std::string& name,
                          std::optional<std::vector<std::string>>& names) {
  if (!names) names = ListDatasets(file, path).value_or(std::vector<std::string>{});
  return absl::NotFoundError(absl::StrCat("reading ", name, " from ", path, ": no such tensor", WhyMissing(name, *names)));
}

absl::Status ReadShardIndependently(hid_t file, const std::string& path, TensorShard& s) {
  if (!LinkExists(file, s.name)) {
    std::optional<std::vector<std::string>> names;
    return NoSuchTensor(file, path, s.name, names);
  }
  BATON_H5_ASSIGN(H5Id d, H5Dopen2(file, s.name.c_str(), H5P_DEFAULT), H5Dclose, path);
  DType dtype;
  Shape shape;
  if (absl::Status st = DatasetInfo(d.get(), path, &dtype, &shape); !st.ok())
    return absl::Status(st.code(), absl::StrCat("reading ", s.name, " from ", path, ": ", st.message()));
  BATON_RETURN_IF_ERROR(CheckDestination(s, path, dtype, shape));
  if (s.local.numel() == 0) return absl::OkStatus();
  Shape start, count;
  SliceBlock(s.full_shape, s.local.shape(), s.shard_dim, s.offset, &start, &count);
  BATON_ASSIGN_OR_RETURN(H5Id fspace, SelectBlock(d.get(), start, count, path));
  H5Id mspace = Dataspace(s.local.shape());
  BATON_CHECK_H5(mspace.get(), path);
  BATON_CHECK_H5(H5Dread(d.get(), MemoryType(dtype), mspace.get(), fspace.get(), H5P_DEFAULT, s.local.raw()), path);
  return absl::OkStatus();
}

absl::Status ReadLocal(const std::string& path, std::vector<TensorShard>& shards, int64_t* step,
                       std::map<std::string, std::string>* attrs) {
  BATON_RETURN_IF_ERROR(CheckCheckpointFile(path));
  BATON_ASSIGN_OR_RETURN(H5Id file, OpenCheckpointForRead(path, H5P_DEFAULT));
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(file.get(), path, step, attrs));
  for (TensorShard& s : shards) BATON_RETURN_IF_ERROR(ReadShardIndependently(file.get(), path, s));
  return absl::OkStatus();
}

#ifdef H5_HAVE_PARALLEL
// Opens `path` on every rank with metadata read once and broadcast.
absl::StatusOr<H5Id> OpenCollective(MPI_Comm comm, const std::string& path) {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  BATON_CHECK_H5(fapl.get(), path);
  BATON_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), path);
  BATON_CHECK_H5(H5Pset_all_coll_metadata_ops(fapl.get(), true), path);
  return OpenCheckpointForRead(path, fapl.get());
}

// The union of the names every rank reads, with the most shards one rank
// reads of each (the number of collective transfers it takes).
absl::StatusOr<std::map<std::string, int>> ReadRounds(MPI_Comm comm, const std::vector<TensorShard>& shards) {
  std::string names_blob;
  for (const TensorShard& s : shards) PutString(names_blob, s.name);
  BATON_ASSIGN_OR_RETURN(std::vector<std::string> all, AllgatherBlobs(comm, names_blob));
  std::map<std::string, int> rounds;
  for (const std::string& blob : all) {
    std::map<std::string, int> count;
    for (const std::string& name : GetStrings(blob)) ++count[name];
    for (const auto& [name, n] : count) rounds[name] = std::max(rounds[name], n);
  }
  return rounds;
}

struct OpenDataset {
  H5Id dset;
  DType dtype;
  Shape shape;
};

// Every rank opens each dataset of the union that exists and checks its
// own destinations against it; the first problem is this rank's error.
absl::Status OpenDatasets(hid_t file, const std::string& path, const std::map<std::string, int>& rounds,
                          const std::map<std::string, std::vector<const TensorShard*>>& mine,
                          std::map<std::string, OpenDataset>* open) {
  absl::Status first_error;
  std::optional<std::vector<std::string>> names;  // the file's, listed once
  for (const auto& [name, n] : rounds) {
    auto it = mine.find(name);
    if (!LinkExists(file, name)) {
      // Metadata reads are collective here: every rank lists the file.
      absl::Status missing = NoSuchTensor(file, path, name, names);
      if (it != mine.end() && first_error.ok()) first_error = missing;
      continue;
    }
    OpenDataset o;
    BATON_H5_ASSIGN(H5Id dset, H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, path);
    o.dset = std::move(dset);
    if (absl::Status s = DatasetInfo(o.dset.get(), path, &o.dtype, &o.shape); !s.ok())
      return absl::Status(s.code(), absl::StrCat("reading ", name, " from ", path, ": ", s.message()));
    for (const TensorShard* s : it != mine.end() ? it->second : std::vector<const TensorShard*>{}) {
      if (first_error.ok()) first_error = CheckDestination(*s, path, o.dtype, o.shape);
    }
    open->emplace(name, std::move(o));
  }
  return first_error;
}

// Every rank opens the file and each dataset of the union of the names
// together, checks its destinations (agreed), then reads its blocks in
// collective transfers.
absl::Status ReadParallel(MPI_Comm comm, const std::string& path, std::vector<TensorShard>& shards, int64_t* step,
                          std::map<std::string, std::string>* attrs) {
  BATON_RETURN_IF_ERROR(Agree(comm, CommRank(comm) == 0 ? CheckCheckpointFile(path) : absl::OkStatus()));
  BATON_ASSIGN_OR_RETURN(auto rounds, ReadRounds(comm, shards));
  const auto mine = ShardsByName(shards, /*writers_only=*/false);

  BATON_ASSIGN_OR_RETURN(H5Id file, OpenCollective(comm, path));
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(file.get(), path, step, attrs));
  std::map<std::string, OpenDataset> open;
  absl::Status first_error = Agree(comm, OpenDatasets(file.get(), path, rounds, mine, &open));
  if (!first_error.ok()) return first_error;  // `open` closes before `file`: both on every rank

  BATON_ASSIGN_OR_RETURN(H5Id dxpl, CollectiveTransferList(path));
  for (auto& [name, o] : open) {
    int64_t numel = 1;
    for (int64_t d : o.shape) numel *= d;
    auto it = mine.find(name);
    for (int k = 0; numel > 0 && k < rounds[name]; ++k) {
      const TensorShard* s = it != mine.end() && k < static_cast<int>(it->second.size()) ? it->second[k] : nullptr;
      absl::Status st = TransferCollective(o.dset.get(), dxpl.get(), o.dtype, s, /*write=*/false, path);
      if (!st.ok() && first_error.ok())
        first_error = absl::Status(st.code(), absl::StrCat("reading ", name, " from ", path, ": ", st.message()));
    }
  }
  open.clear();
  BATON_CHECK_H5(file.Close(), path);
  return first_error;
}
#endif  // H5_HAVE_PARALLEL

absl::Status ListLocal(const std::string& path, std::vector<std::string>* names) {
  BATON_RETURN_IF_ERROR(CheckCheckpointFile(path));
  BATON_ASSIGN_OR_RETURN(H5Id file, OpenCheckpointForRead(path, H5P_DEFAULT));
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(file.get(), path, &step, &attrs));  // a baton checkpoint at all?
  BATON_ASSIGN_OR_RETURN(*names, ListDatasets(file.get(), path));
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadShardedCheckpoint(MPI_Comm comm, const std::string& path, std::vector<TensorShard>& shards,
                                   int64_t* step, std::map<std::string, std::string>* attrs) {
#ifdef H5_HAVE_PARALLEL
  Hdf5Init();
  return NamingFile(Agree(comm, ReadParallel(comm, path, shards, step, attrs)), path);
#else
  return ReadShardedCheckpointIndependently(comm, path, shards, step, attrs);
#endif
}

absl::Status ReadShardedCheckpointIndependently(MPI_Comm comm, const std::string& path,
                                                std::vector<TensorShard>& shards, int64_t* step,
                                                std::map<std::string, std::string>* attrs) {
  Hdf5Init();
  return NamingFile(Agree(comm, ReadLocal(path, shards, step, attrs)), path);
}

absl::StatusOr<std::vector<std::string>> ListCheckpointTensors(MPI_Comm comm, const std::string& path) {
  Hdf5Init();
  std::vector<std::string> names;
  BATON_RETURN_IF_ERROR(
      NamingFile(Agree(comm, CommRank(comm) == 0 ? ListLocal(path, &names) : absl::OkStatus()), path));
  std::string blob;
  for (const std::string& n : names) PutString(blob, n);
  BATON_RETURN_IF_ERROR(BroadcastBlob(comm, &blob));
  return GetStrings(blob);
}

}  // namespace baton
