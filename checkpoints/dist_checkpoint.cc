// Collective checkpoint writer and reader (see dist_checkpoint.h).
// Parallel HDF5 requires every rank to make the same metadata calls
// (create, open, close) in the same order: both directions first agree on
// the union of tensor names, walk it sorted, and record data-transfer
// errors instead of returning early so no rank skips a collective call.
// HDF5 metadata calls see the same file on every rank, so they fail alike.
#include "checkpoints/dist_checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/h5.h"
#include "parallel/mpi_check.h"

namespace baton {
namespace {

int RankOf(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}
int SizeOf(MPI_Comm comm) {
  int n = 1;
  MPI_Comm_size(comm, &n);
  return n;
}

// ---- agreement: an error on one rank is an error on every rank

// The lowest failing rank's status on every rank ("... (on rank 2)" elsewhere).
absl::Status Agree(MPI_Comm comm, const absl::Status& mine) {
  const int rank = RankOf(comm), size = SizeOf(comm);
  int bad = mine.ok() ? size : rank, first = size;
  BATON_CHECK_MPI(MPI_Allreduce(&bad, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return absl::OkStatus();
  int head[2] = {static_cast<int>(mine.code()), static_cast<int>(mine.message().size())};
  BATON_CHECK_MPI(MPI_Bcast(head, 2, MPI_INT, first, comm));
  std::string msg(mine.message());
  msg.resize(head[1]);
  BATON_CHECK_MPI(MPI_Bcast(msg.data(), head[1], MPI_CHAR, first, comm));
  if (rank != first) msg = absl::StrCat(msg, " (on rank ", first, ")");
  return absl::Status(static_cast<absl::StatusCode>(head[0]), msg);
}

// "checkpoint PATH: ..." unless the message names the file already.
absl::Status NamingFile(const absl::Status& s, const std::string& path) {
  if (s.ok() || absl::StrContains(s.message(), path)) return s;
  return absl::Status(s.code(), absl::StrCat("checkpoint ", path, ": ", s.message()));
}

// ---- serialization for the metadata exchange

void PutInt(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
int64_t GetInt(const char*& p) {
  int64_t v;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return v;
}
void PutString(std::string& out, const std::string& s) {
  PutInt(out, static_cast<int64_t>(s.size()));
  out += s;
}
std::string GetString(const char*& p) {
  const int64_t n = GetInt(p);
  std::string s(p, n);
  p += n;
  return s;
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

// Every rank's `mine`, in rank order, on every rank.
absl::StatusOr<std::vector<std::string>> AllgatherBlobs(MPI_Comm comm, const std::string& mine) {
  const int size = SizeOf(comm);
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size), displs(size);
  BATON_CHECK_MPI(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = static_cast<int>(total);
    total += lens[r];
  }
  if (total > INT32_MAX) return absl::ResourceExhaustedError("the shard lists of all ranks exceed 2 GiB");
  std::string all(total, '\0');
  BATON_CHECK_MPI(
      MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, comm));
  std::vector<std::string> out(size);
  for (int r = 0; r < size; ++r) out[r] = all.substr(displs[r], lens[r]);
  return out;
}

// Rank 0's `blob` on every rank.
absl::Status BroadcastBlob(MPI_Comm comm, std::string* blob) {
  int64_t len = static_cast<int64_t>(blob->size());
  BATON_CHECK_MPI(MPI_Bcast(&len, 1, MPI_INT64_T, 0, comm));
  if (len > INT32_MAX) return absl::ResourceExhaustedError("broadcast over 2 GiB");
  blob->resize(len);
  BATON_CHECK_MPI(MPI_Bcast(blob->data(), static_cast<int>(len), MPI_CHAR, 0, comm));
  return absl::OkStatus();
}

// Point-to-point in pieces: MPI counts are ints, slices may pass 2 GiB.
constexpr size_t kMpiPiece = size_t{1} << 30;
absl::Status SendBytes(const void* p, size_t n, int to, MPI_Comm comm) {
  for (size_t at = 0; at < n; at += kMpiPiece) {
    BATON_CHECK_MPI(MPI_Send(static_cast<const char*>(p) + at, static_cast<int>(std::min(kMpiPiece, n - at)),
                             MPI_BYTE, to, 0, comm));
  }
  return absl::OkStatus();
}
absl::Status RecvBytes(void* p, size_t n, int from, MPI_Comm comm) {
  for (size_t at = 0; at < n; at += kMpiPiece) {
    BATON_CHECK_MPI(MPI_Recv(static_cast<char*>(p) + at, static_cast<int>(std::min(kMpiPiece, n - at)), MPI_BYTE,
                             from, 0, comm, MPI_STATUS_IGNORE));
  }
  return absl::OkStatus();
}

// ---- the tiling check

// What a rank holds of one tensor, as every rank learns it.
struct Entry {
  std::string name;
  DType dtype = DType::kF32;
  Shape full, local;
  int dim = -1;
  int64_t offset = 0;
  bool write = true;
  int rank = 0;   // who holds it
  int index = 0;  // its position in that rank's shard list
};

// One tensor of the file: its writers (sorted by offset) and how many
// collective transfers it takes (the most slices one rank writes of it).
struct TensorPlan {
  DType dtype = DType::kF32;
  Shape full;
  std::vector<Entry> writers;
  int rounds = 0;
};
using Plans = std::map<std::string, TensorPlan>;  // sorted: the order of every collective call

absl::StatusOr<std::vector<Entry>> ExchangeEntries(MPI_Comm comm, const std::vector<TensorShard>& shards) {
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
  std::vector<Entry> out;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    const char* p = all[r].data();
    const int64_t n = GetInt(p);
    for (int64_t i = 0; i < n; ++i) {
      Entry e;
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

// The slice a shard describes fits its full shape: same rank, equal
// extents except along dim, inside [0, full[dim]). "" if it does.
std::string SliceProblem(const Shape& full, const Shape& local, int dim, int64_t offset) {
  const int rank = static_cast<int>(full.size());
  if (dim < -1 || dim >= rank) return absl::StrCat("split along dim ", dim, " of a ", rank, "-dim tensor");
  bool fits = local.size() == full.size();
  for (int i = 0; fits && i < rank; ++i) fits = i == dim || local[i] == full[i];
  if (fits && dim >= 0) fits = offset >= 0 && offset + local[dim] <= full[dim];
  if (fits) return "";
  return absl::StrCat("slice ", ShapeString(local), " at offset ", offset, " along dim ", dim, " does not fit ",
                      ShapeString(full));
}

// Checks that the written slices tile every named tensor exactly once.
// Every rank runs it on the same entries and reaches the same verdict.
absl::StatusOr<Plans> Tile(const std::vector<Entry>& entries, const std::string& path) {
  std::map<std::string, std::vector<Entry>> by_name;
  for (const Entry& e : entries) by_name[e.name].push_back(e);
  Plans plans;
  for (auto& [name, list] : by_name) {
    auto bad = [&](auto... parts) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": tensor ", name, ": ", parts...));
    };
    if (absl::Status s = CheckName(name); !s.ok()) return bad(s.message());
    const Entry& first = list[0];
    for (const Entry& e : list) {
      if (e.full != first.full || e.dtype != first.dtype) {
        return bad("ranks ", first.rank, " and ", e.rank, " disagree on its shape or dtype (",
                   ShapeString(first.full), " ", DTypeName(first.dtype), " vs ", ShapeString(e.full), " ",
                   DTypeName(e.dtype), ")");
      }
      if (std::string p = SliceProblem(e.full, e.local, e.dim, e.offset); !p.empty()) return bad("rank ", e.rank, "'s ", p);
    }
    TensorPlan plan{first.dtype, first.full, {}, 0};
    for (const Entry& e : list) {
      if (e.write) plan.writers.push_back(e);
    }
    if (plan.writers.empty()) {
      return bad("not covered: no rank writes it (", list.size(), " replica(s) with write = false, e.g. rank ",
                 first.rank, ")");
    }
    const Entry& w0 = plan.writers[0];
    for (const Entry& e : plan.writers) {
      if (&e == &w0) continue;
      if (e.dim < 0 || w0.dim < 0)
        return bad("written more than once (overlap): ranks ", w0.rank, " and ", e.rank, " both write it whole or in part");
      if (e.dim != w0.dim)
        return bad("ranks ", w0.rank, " and ", e.rank, " write slices along different dims (", w0.dim, " and ", e.dim, ")");
    }
    if (w0.dim >= 0) {
      const int dim = w0.dim;
      std::stable_sort(plan.writers.begin(), plan.writers.end(),
                       [](const Entry& a, const Entry& b) { return a.offset < b.offset; });
      int64_t at = 0;
      for (const Entry& e : plan.writers) {
        if (e.offset != at) {
          return bad(e.offset < at ? "slices overlap" : "not covered: slices leave a gap", " at ", std::min(at, e.offset),
                     " along dim ", dim, " (rank ", e.rank, ")");
        }
        at += e.local[dim];
      }
      if (at != plan.full[dim]) return bad("not covered: slices cover ", at, " of ", plan.full[dim], " along dim ", dim);
    }
    std::map<int, int> per_rank;
    for (const Entry& e : plan.writers) plan.rounds = std::max(plan.rounds, ++per_rank[e.rank]);
    plans.emplace(name, std::move(plan));
  }
  return plans;
}

// Start and extent of a shard's block in the file.
void Block(const Shape& full, const Shape& local, int dim, int64_t offset, Shape* start, Shape* count) {
  *start = Shape(full.size(), 0);
  *count = local;
  if (dim >= 0) (*start)[dim] = offset;
}

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

// Rank 0's step and attributes on every rank (parallel HDF5 metadata writes
// must be identical on all ranks).
absl::Status BroadcastAttrs(MPI_Comm comm, int64_t* step, std::map<std::string, std::string>* attrs) {
  std::string blob;
  if (RankOf(comm) == 0) {
    PutInt(blob, *step);
    for (const auto& [k, v] : *attrs) {
      PutString(blob, k);
      PutString(blob, v);
    }
  }
  BATON_RETURN_IF_ERROR(BroadcastBlob(comm, &blob));
  if (RankOf(comm) == 0) return absl::OkStatus();
  const char* p = blob.data();
  *step = GetInt(p);
  attrs->clear();
  while (p < blob.data() + blob.size()) {
    std::string k = GetString(p);
    (*attrs)[k] = GetString(p);
  }
  return absl::OkStatus();
}

// Checks every rank can make locally, agreed, then the exchange and the
// tiling: the same plans (or the same error) on every rank.
absl::StatusOr<Plans> PlanWrite(MPI_Comm comm, const std::string& path, const std::vector<TensorShard>& shards) {
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
  BATON_ASSIGN_OR_RETURN(std::vector<Entry> entries, ExchangeEntries(comm, shards));
  return Tile(entries, path);
}

// ---- writing through parallel HDF5

#ifdef H5_HAVE_PARALLEL
// A dataspace with nothing selected: a rank's part in a collective transfer
// of a tensor it holds no (more) slices of.
absl::StatusOr<H5Id> NoneSelected(hid_t dset, const std::string& file) {
  H5Id space(H5Dget_space(dset), H5Sclose);
  BATON_CHECK_H5(space.get(), file);
  BATON_CHECK_H5(H5Sselect_none(space.get()), file);
  return space;
}

// One collective transfer (write or read) of `shard`'s block, or of nothing.
absl::Status TransferCollective(hid_t dset, hid_t dxpl, DType dtype, const TensorShard* shard, bool write,
                                const std::string& file) {
  H5Id fspace, mspace;
  void* buf = nullptr;
  static char nothing;  // HDF5 wants a non-null buffer even for an empty selection
  if (shard != nullptr && shard->local.numel() > 0) {
    Shape start, count;
    Block(shard->full_shape, shard->local.shape(), shard->shard_dim, shard->offset, &start, &count);
    BATON_ASSIGN_OR_RETURN(fspace, SelectBlock(dset, start, count, file));
    mspace = Dataspace(shard->local.shape());
    BATON_CHECK_H5(mspace.get(), file);
    buf = const_cast<void*>(shard->local.raw());
  } else {
    BATON_ASSIGN_OR_RETURN(fspace, NoneSelected(dset, file));
    BATON_ASSIGN_OR_RETURN(mspace, NoneSelected(dset, file));
    buf = &nothing;
  }
  if (write) {
    BATON_CHECK_H5(H5Dwrite(dset, MemoryType(dtype), mspace.get(), fspace.get(), dxpl, buf), file);
  } else {
    BATON_CHECK_H5(H5Dread(dset, MemoryType(dtype), mspace.get(), fspace.get(), dxpl, buf), file);
  }
  return absl::OkStatus();
}

absl::StatusOr<H5Id> CollectiveTransfer(const std::string& file) {
  H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  BATON_CHECK_H5(dxpl.get(), file);
  BATON_CHECK_H5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), file);
  return dxpl;
}

// This rank's shards of each tensor, in list order.
std::map<std::string, std::vector<const TensorShard*>> ByName(const std::vector<TensorShard>& shards, bool writers_only) {
  std::map<std::string, std::vector<const TensorShard*>> out;
  for (const TensorShard& s : shards) {
    if (s.write || !writers_only) out[s.name].push_back(&s);
  }
  return out;
}

// Every rank: create the file and the datasets together, write the own
// blocks collectively, close together. The first error is returned after
// the close, so that every rank reaches it.
absl::Status WriteParallel(MPI_Comm comm, const std::string& tmp, int64_t step,
                           const std::map<std::string, std::string>& attrs, const Plans& plans,
                           const std::vector<TensorShard>& shards) {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  BATON_CHECK_H5(fapl.get(), tmp);
  BATON_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), tmp);
  BATON_CHECK_H5(H5Pset_coll_metadata_write(fapl.get(), true), tmp);  // metadata flushed in one collective write
  BATON_H5_ASSIGN(H5Id file, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, tmp);
  BATON_RETURN_IF_ERROR(WriteCheckpointAttrs(file.get(), step, attrs, tmp));
  H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  BATON_CHECK_H5(lcpl.get(), tmp);
  BATON_CHECK_H5(H5Pset_create_intermediate_group(lcpl.get(), 1), tmp);
  BATON_ASSIGN_OR_RETURN(H5Id dxpl, CollectiveTransfer(tmp));
  const auto mine = ByName(shards, /*writers_only=*/true);
  absl::Status first_error;
  for (const auto& [name, plan] : plans) {
    BATON_ASSIGN_OR_RETURN(hid_t ftype, FileType(plan.dtype));
    H5Id space = Dataspace(plan.full);
    BATON_CHECK_H5(space.get(), tmp);
    BATON_H5_ASSIGN(H5Id dset,
                    H5Dcreate2(file.get(), name.c_str(), ftype, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
                    H5Dclose, tmp);
    int64_t numel = 1;
    for (int64_t d : plan.full) numel *= d;
    auto it = mine.find(name);
    for (int k = 0; numel > 0 && k < plan.rounds; ++k) {
      const TensorShard* s = it != mine.end() && k < static_cast<int>(it->second.size()) ? it->second[k] : nullptr;
      absl::Status st = TransferCollective(dset.get(), dxpl.get(), plan.dtype, s, /*write=*/true, tmp);
      if (!st.ok() && first_error.ok())
        first_error = absl::Status(st.code(), absl::StrCat("writing ", name, ": ", st.message()));
    }
    BATON_CHECK_H5(dset.Close(), tmp);
  }
  BATON_CHECK_H5(file.Close(), tmp);
  return first_error;
}

// Opens `path` on every rank with metadata read once and broadcast.
absl::StatusOr<H5Id> OpenCollective(MPI_Comm comm, const std::string& path) {
  H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  BATON_CHECK_H5(fapl.get(), path);
  BATON_CHECK_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL), path);
  BATON_CHECK_H5(H5Pset_all_coll_metadata_ops(fapl.get(), true), path);
  BATON_H5_ASSIGN(H5Id file, H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, path);
  return file;
}
#endif  // H5_HAVE_PARALLEL

// ---- reading

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
  return absl::OkStatus();
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

absl::Status ReadShardIndependently(hid_t file, const std::string& path, TensorShard& s) {
  if (!LinkExists(file, s.name)) return absl::NotFoundError(absl::StrCat("reading ", s.name, " from ", path, ": no such tensor"));
  BATON_H5_ASSIGN(H5Id d, H5Dopen2(file, s.name.c_str(), H5P_DEFAULT), H5Dclose, path);
  DType dtype;
  Shape shape;
  BATON_RETURN_IF_ERROR(DatasetInfo(d.get(), path, &dtype, &shape));
  BATON_RETURN_IF_ERROR(CheckDestination(s, path, dtype, shape));
  if (s.local.numel() == 0) return absl::OkStatus();
  Shape start, count;
  Block(s.full_shape, s.local.shape(), s.shard_dim, s.offset, &start, &count);
  BATON_ASSIGN_OR_RETURN(H5Id fspace, SelectBlock(d.get(), start, count, path));
  H5Id mspace = Dataspace(s.local.shape());
  BATON_CHECK_H5(mspace.get(), path);
  BATON_CHECK_H5(H5Dread(d.get(), MemoryType(dtype), mspace.get(), fspace.get(), H5P_DEFAULT, s.local.raw()), path);
  return absl::OkStatus();
}

absl::Status ReadLocal(const std::string& path, std::vector<TensorShard>& shards, int64_t* step,
                       std::map<std::string, std::string>* attrs) {
  BATON_RETURN_IF_ERROR(CheckCheckpointFile(path));
  BATON_H5_ASSIGN(H5Id file, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path);
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(file.get(), path, step, attrs));
  for (TensorShard& s : shards) BATON_RETURN_IF_ERROR(ReadShardIndependently(file.get(), path, s));
  return absl::OkStatus();
}

#ifdef H5_HAVE_PARALLEL
// Every rank opens the file and each dataset of the union of the names
// together, checks its destinations (agreed), then reads its blocks in
// collective transfers.
absl::Status ReadParallel(MPI_Comm comm, const std::string& path, std::vector<TensorShard>& shards, int64_t* step,
                          std::map<std::string, std::string>* attrs) {
  BATON_RETURN_IF_ERROR(Agree(comm, RankOf(comm) == 0 ? CheckCheckpointFile(path) : absl::OkStatus()));
  std::string names_blob;
  for (const TensorShard& s : shards) PutString(names_blob, s.name);
  BATON_ASSIGN_OR_RETURN(std::vector<std::string> all, AllgatherBlobs(comm, names_blob));
  std::map<std::string, int> rounds;  // the union, with the most shards one rank reads of each
  for (const std::string& blob : all) {
    std::map<std::string, int> count;
    for (const char* p = blob.data(); p < blob.data() + blob.size();) ++count[GetString(p)];
    for (const auto& [name, n] : count) rounds[name] = std::max(rounds[name], n);
  }
  const auto mine = ByName(shards, /*writers_only=*/false);

  BATON_ASSIGN_OR_RETURN(H5Id file, OpenCollective(comm, path));
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(file.get(), path, step, attrs));
  struct Open {
    H5Id dset;
    DType dtype;
    Shape shape;
  };
  std::map<std::string, Open> open;
  absl::Status first_error;
  for (const auto& [name, n] : rounds) {
    auto it = mine.find(name);
    if (!LinkExists(file.get(), name)) {
      if (it != mine.end() && first_error.ok())
        first_error = absl::NotFoundError(absl::StrCat("reading ", name, " from ", path, ": no such tensor"));
      continue;
    }
    Open o;
    BATON_H5_ASSIGN(H5Id dset, H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose, path);
    o.dset = std::move(dset);
    if (absl::Status s = DatasetInfo(o.dset.get(), path, &o.dtype, &o.shape); !s.ok())
      return absl::Status(s.code(), absl::StrCat("reading ", name, " from ", path, ": ", s.message()));
    for (const TensorShard* s : it != mine.end() ? it->second : std::vector<const TensorShard*>{}) {
      if (first_error.ok()) first_error = CheckDestination(*s, path, o.dtype, o.shape);
    }
    open.emplace(name, std::move(o));
  }
  first_error = Agree(comm, first_error);
  if (!first_error.ok()) return first_error;  // `open` closes before `file`: both on every rank

  BATON_ASSIGN_OR_RETURN(H5Id dxpl, CollectiveTransfer(path));
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
  BATON_H5_ASSIGN(H5Id file, H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path);
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  BATON_RETURN_IF_ERROR(ReadCheckpointAttrs(file.get(), path, &step, &attrs));  // a baton checkpoint at all?
  BATON_ASSIGN_OR_RETURN(*names, ListDatasets(file.get(), path));
  return absl::OkStatus();
}

// Rank 0 renames PATH.tmp to PATH once every rank has closed it (`written`
// is agreed), or removes it; the outcome is agreed again.
absl::Status Commit(MPI_Comm comm, const std::string& path, absl::Status written) {
  const std::string tmp = path + ".tmp";
  absl::Status st = std::move(written);
  if (RankOf(comm) == 0) {
    if (st.ok()) st = FsyncPath(tmp, /*directory=*/false);
    if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
      st = absl::InternalError(absl::StrCat("rename ", tmp, " to ", path, ": ", std::strerror(errno)));
    if (!st.ok()) std::remove(tmp.c_str());
    if (st.ok()) st = FsyncPath(DirOf(path), /*directory=*/true);
  }
  return NamingFile(Agree(comm, st), path);
}

}  // namespace

// ---- public API

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
  BATON_ASSIGN_OR_RETURN(Plans plans, PlanWrite(comm, path, shards));  // the same verdict on every rank
  int64_t the_step = step;
  std::map<std::string, std::string> the_attrs = attrs;
  BATON_RETURN_IF_ERROR(BroadcastAttrs(comm, &the_step, &the_attrs));
  const std::string tmp = path + ".tmp";
  if (RankOf(comm) == 0) std::remove(tmp.c_str());  // a stale one from a crashed save
  absl::Status written = Agree(comm, WriteParallel(comm, tmp, the_step, the_attrs, plans, shards));
  return Commit(comm, path, written);
#else
  return WriteShardedCheckpointViaRank0(comm, path, step, shards, attrs);
#endif
}

absl::Status WriteShardedCheckpointViaRank0(MPI_Comm comm, const std::string& path, int64_t step,
                                            const std::vector<TensorShard>& shards,
                                            const std::map<std::string, std::string>& attrs) {
  Hdf5Init();
  BATON_ASSIGN_OR_RETURN(Plans plans, PlanWrite(comm, path, shards));
  const int rank = RankOf(comm);
  absl::Status st;
  if (rank != 0) {  // sends in plan order, which is the order rank 0 receives in
    for (const auto& [name, plan] : plans) {
      for (const Entry& e : plan.writers) {
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
    for (const Entry& e : plan.writers) {
      Tensor slab = e.rank == 0 ? shards[e.index].local : Tensor::Empty(e.local, e.dtype);
      if (e.rank != 0 && st.ok()) st = RecvBytes(slab.raw(), slab.nbytes(), e.rank, comm);
      if (st.ok()) PlaceSlab(slab, e.dim, e.offset, full);
    }
    data.tensors.push_back({name, std::move(full)});
  }
  if (st.ok()) st = WriteCheckpoint(path, data);
  return NamingFile(Agree(comm, st), path);
}

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
  BATON_RETURN_IF_ERROR(NamingFile(Agree(comm, RankOf(comm) == 0 ? ListLocal(path, &names) : absl::OkStatus()), path));
  std::string blob;
  for (const std::string& n : names) PutString(blob, n);
  BATON_RETURN_IF_ERROR(BroadcastBlob(comm, &blob));
  names.clear();
  for (const char* p = blob.data(); p < blob.data() + blob.size();) names.push_back(GetString(p));
  return names;
}

}  // namespace baton
