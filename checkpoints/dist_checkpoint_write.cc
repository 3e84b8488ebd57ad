// The collective checkpoint writer (see dist_checkpoint.h). The ranks first
// agree on a plan (shard_tiling.h over the allgathered shard lists), rank 0
// makes room on the disk and reserves the whole temporary file before
// HDF5 opens it (disk_room.h), then all write through parallel HDF5 in
// phases: create the file, lay out every dataset, flush the metadata,
// write the blocks one tensor at a time, close.
// Each phase ends in an agreement (Agree), and a failed phase sends every
// rank the same way out: rank 0 frees room first, so the closing calls
// (collective in HDF5 and MPI-IO) can finish on a full disk, then all close
// together and PATH.tmp is removed. No rank returns early from inside a
// phase: that left the others in a collective that never completed (issue 15).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/collective_transfer.h"
#include "checkpoints/disk_room.h"
#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/h5.h"
#include "checkpoints/mpi_blobs.h"
#include "checkpoints/shard_tiling.h"

namespace baton {
namespace {

// ---- the plan: the same on every rank

absl::StatusOr<std::vector<ShardEntry>> ExchangeEntries(MPI_Comm comm, const std::vector<TensorShard>& shards) {
  std::string mine;
  PutInt(mine, static_cast<int64_t>(shards.size()));
  for (const TensorShard& s : shards) {
    PutString(mine, s.name);
    PutInt(mine, static_cast<int64_t>(s.local.dtype()));
    PutShape(mine, s.full_shape);
    PutShape(mine, s.local.shape());
    PutInt(mine, s.shard_dim);
    PutInt(mine, s.offset);
    PutInt(mine, s.write ? 1 : 0);
  }
  BATON_ASSIGN_OR_RETURN(std::vector<std::string> all, AllgatherBlobs(comm, mine));
  std::vector<ShardEntry> out;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    const char* p = all[r].data();
    const int64_t n = GetInt(p);
    for (int64_t i = 0; i < n; ++i) {
      ShardEntry e;
      e.name = GetString(p);
      e.dtype = static_cast<DType>(GetInt(p));
      e.full = GetShape(p);
      e.local = GetShape(p);
      e.dim = static_cast<int>(GetInt(p));
      e.offset = GetInt(p);
      e.write = GetInt(p) != 0;
      e.rank = r;
      e.index = static_cast<int>(i);
      out.push_back(std::move(e));
    }
  }
  return out;
}

// Checks every rank can make locally, agreed, then the exchange and the
// tiling: the same plans (or the same error) on every rank.
absl::StatusOr<TensorPlans> PlanWrite(MPI_Comm comm, const std::string& path, const std::vector<TensorShard>& shards) {
  absl::Status mine;
  for (const TensorShard& s : shards) {
    auto bad = [&](auto... parts) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": tensor ", s.name, ": ", parts...));
    };
    if (!s.local.defined()) {
      mine = bad("the slice is undefined");
    } else if (!FileType(s.local.dtype()).ok()) {
      mine = bad("dtype ", DTypeName(s.local.dtype()), " is not supported (f32, f64, i32)");
    } else if (s.write && (s.local.device() != Device::kCpu || !s.local.is_contiguous())) {
      mine = bad("the slice must be a contiguous CPU tensor (it is ", s.local.DebugString(), ")");
    }
    if (!mine.ok()) break;
  }
  BATON_RETURN_IF_ERROR(Agree(comm, mine));
  BATON_ASSIGN_OR_RETURN(std::vector<ShardEntry> entries, ExchangeEntries(comm, shards));
  return TileShards(entries, path);
}

// Rank 0's step and attributes on every rank (parallel HDF5 metadata writes
// must be identical on all ranks).
absl::Status BroadcastAttrs(MPI_Comm comm, int64_t* step, std::map<std::string, std::string>* attrs) {
  std::string blob;
  if (CommRank(comm) == 0) {
    PutInt(blob, *step);
    for (const auto& [k, v] : *attrs) {
      PutString(blob, k);
      PutString(blob, v);
    }
  }
  BATON_RETURN_IF_ERROR(BroadcastBlob(comm, &blob));
  if (CommRank(comm) == 0) return absl::OkStatus();
  const char* p = blob.data();
  *step = GetInt(p);
  attrs->clear();
  while (p < blob.data() + blob.size()) {
    std::string k = GetString(p);
    (*attrs)[k] = GetString(p);
  }
  return absl::OkStatus();
}

// ---- writing through parallel HDF5

#ifdef H5_HAVE_PARALLEL
// The root attributes and every dataset, created in plan order on every
// rank (parallel HDF5 places each dataset's storage now).
absl::Status LayOut(hid_t file, const std::string& tmp, int64_t step, const std::map<std::string, std::string>& attrs,
                    const TensorPlans& plans, std::vector<H5Id>* dsets) {
  BATON_RETURN_IF_ERROR(WriteCheckpointAttrs(file, step, attrs, tmp));
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  BATON_CHECK_H5(lcpl.get(), tmp);
  BATON_CHECK_H5(H5Pset_create_intermediate_group(lcpl.get(), 1), tmp);
  H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  BATON_CHECK_H5(dcpl.get(), tmp);
  BATON_CHECK_H5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), tmp);  // every element is written
  for (const auto& [name, plan] : plans) {
    BATON_ASSIGN_OR_RETURN(hid_t ftype, FileType(plan.dtype));
    H5Id space = Dataspace(plan.full);
    BATON_CHECK_H5(space.get(), tmp);
    BATON_H5_ASSIGN(H5Id dset,
                    H5Dcreate2(file, name.c_str(), ftype, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                    H5Dclose, tmp);
    dsets->push_back(std::move(dset));
  }
  return absl::OkStatus();
}

// Every rank's blocks, one tensor at a time, agreed after each tensor: the
// first failure anywhere stops every rank at the same tensor.
absl::Status WriteBlocks(MPI_Comm comm, const std::string& tmp, const TensorPlans& plans,
                         const std::vector<H5Id>& dsets, const std::vector<TensorShard>& shards) {
  absl::StatusOr<H5Id> dxpl = CollectiveTransferList(tmp);
  BATON_RETURN_IF_ERROR(Agree(comm, dxpl.status()));
  const auto mine = ShardsByName(shards, /*writers_only=*/true);
  size_t i = 0;
  for (const auto& [name, plan] : plans) {
    const hid_t dset = dsets[i++].get();
    int64_t numel = 1;
    for (int64_t d : plan.full) numel *= d;
    auto it = mine.find(name);
    absl::Status st;
    for (int k = 0; numel > 0 && k < plan.rounds; ++k) {
      const TensorShard* s = it != mine.end() && k < static_cast<int>(it->second.size()) ? it->second[k] : nullptr;
      absl::Status one = TransferCollective(dset, dxpl->get(), plan.dtype, s, /*write=*/true, tmp);
      if (!one.ok() && st.ok()) st = absl::Status(one.code(), absl::StrCat("writing ", name, ": ", one.message()));
    }
    BATON_RETURN_IF_ERROR(Agree(comm, st));
  }
  return absl::OkStatus();
}

// Every rank: create the file together, then the phases above; whatever
// fails, every rank closes the same handles and returns the same status.
absl::Status WriteParallel(MPI_Comm comm, const std::string& path, const std::string& tmp, bool reserved,
                           int64_t step, const std::map<std::string, std::string>& attrs, const TensorPlans& plans,
                           const std::vector<TensorShard>& shards) {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  BATON_CHECK_H5(fapl.get(), tmp);
  BATON_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), tmp);
  BATON_CHECK_H5(H5Pset_coll_metadata_write(fapl.get(), true), tmp);  // metadata flushed in one collective write
  // The create is collective and sees the same directory everywhere, so it
  // fails on every rank or none.
  H5Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  BATON_RETURN_IF_ERROR(Agree(comm, FromHdf5(file.get(), "H5Fcreate", tmp, __FILE__, __LINE__)));

  std::vector<H5Id> dsets;
  absl::Status st = Agree(comm, LayOut(file.get(), tmp, step, attrs, plans, &dsets));
  // The metadata goes to disk first, so that closing after a failed data
  // write has no metadata left to flush.
  if (st.ok()) st = Agree(comm, FromHdf5(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", tmp, __FILE__, __LINE__));
  if (st.ok()) st = WriteBlocks(comm, tmp, plans, dsets, shards);
  if (!st.ok()) {
    // Give the disk back before the collective closes, which may still write.
    if (CommRank(comm) == 0) FreeRoomForClose(path, tmp, reserved);
    (void)Agree(comm, absl::OkStatus());  // a barrier: the space is free before anyone closes
  }
  absl::Status closed;
  for (H5Id& d : dsets) {
    absl::Status c = FromHdf5(d.Close(), "H5Dclose", tmp, __FILE__, __LINE__);
    if (closed.ok()) closed = c;
  }
  absl::Status c = FromHdf5(file.Close(), "H5Fclose", tmp, __FILE__, __LINE__);
  if (closed.ok()) closed = c;
  return Agree(comm, st.ok() ? closed : st);
}
#endif  // H5_HAVE_PARALLEL

// Rank 0 renames PATH.tmp to PATH once every rank has closed it (`written`
// is agreed), or removes it; the outcome is agreed again.
absl::Status Commit(MPI_Comm comm, const std::string& path, absl::Status written) {
  const std::string tmp = path + ".tmp";
  absl::Status st = std::move(written);
  if (CommRank(comm) == 0) {
    if (st.ok()) st = FsyncPath(tmp, /*directory=*/false);
    if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
      st = absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", std::strerror(errno)));
    if (!st.ok()) std::remove(tmp.c_str());
    if (st.ok()) st = FsyncPath(DirOf(path), /*directory=*/true);
  }
  return NamingFile(Agree(comm, st), path);
}

// ---- the serial fallback: slices gathered to rank 0

// Copies a slab (a slice along dim at offset) into the full tensor.
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
#ifdef H5_HAVE_PARALLEL
  Hdf5Init();
  BATON_ASSIGN_OR_RETURN(TensorPlans plans, PlanWrite(comm, path, shards));  // the same verdict on every rank
  int64_t the_step = step;
  std::map<std::string, std::string> the_attrs = attrs;
  BATON_RETURN_IF_ERROR(BroadcastAttrs(comm, &the_step, &the_attrs));
  const std::string tmp = path + ".tmp";
  int64_t data_bytes = 0;
  for (const auto& [name, plan] : plans) {
    int64_t numel = 1;
    for (int64_t d : plan.full) numel *= d;
    data_bytes += numel * static_cast<int64_t>(DTypeSize(plan.dtype));
  }
  const SaveRoom room = CheckpointRoom(data_bytes, static_cast<int64_t>(plans.size()), the_attrs);
  // Rank 0 reserves the whole file before anything is written, before
  // HDF5 even opens it: no write can meet a full disk, where MPI-IO may
  // report the failure on one rank only, or not at all, and HDF5's flush
  // may hang (issue 15; a disk filled by another writer mid-save hung here).
  absl::Status prepared;
  bool reserved = false;
  if (CommRank(comm) == 0) {
    std::remove(tmp.c_str());  // a stale one from a crashed save
    prepared = PrepareRoom(path, room);
    if (prepared.ok()) prepared = ReserveBeforeCreate(path, tmp, room, &reserved);
    if (!prepared.ok()) std::remove(BallastPath(path).c_str());
  }
  BATON_RETURN_IF_ERROR(Agree(comm, prepared));
  absl::Status written = WriteParallel(comm, path, tmp, reserved, the_step, the_attrs, plans, shards);
  if (CommRank(comm) == 0) FinishRoom(path, tmp, room, written.ok());
  return Commit(comm, path, written);
#else
  return WriteShardedCheckpointViaRank0(comm, path, step, shards, attrs);
#endif
}

absl::Status WriteShardedCheckpointViaRank0(MPI_Comm comm, const std::string& path, int64_t step,
                                            const std::vector<TensorShard>& shards,
                                            const std::map<std::string, std::string>& attrs) {
  Hdf5Init();
  BATON_ASSIGN_OR_RETURN(TensorPlans plans, PlanWrite(comm, path, shards));
  const int rank = CommRank(comm);
  absl::Status st;
  if (rank != 0) {  // sends in plan order, which is the order rank 0 receives in
    for (const auto& [name, plan] : plans) {
      for (const ShardEntry& e : plan.writers) {
        if (e.rank != rank || !st.ok()) continue;
        st = SendBytes(shards[e.index].local.raw(), shards[e.index].local.nbytes(), 0, comm);
      }
    }
    return NamingFile(Agree(comm, st), path);
  }
  CheckpointData data;
  data.step = step;
  data.attrs = attrs;
  for (const auto& [name, plan] : plans) {
    Tensor full = Tensor::Empty(plan.full, plan.dtype);
    for (const ShardEntry& e : plan.writers) {
      Tensor slab = e.rank == 0 ? shards[e.index].local : Tensor::Empty(e.local, e.dtype);
      if (e.rank != 0 && st.ok()) st = RecvBytes(slab.raw(), slab.nbytes(), e.rank, comm);
      if (st.ok()) PlaceSlab(slab, e.dim, e.offset, full);
    }
    data.tensors.push_back({name, std::move(full)});
  }
  if (st.ok()) st = WriteCheckpoint(path, data);
  return NamingFile(Agree(comm, st), path);
}

}  // namespace baton
