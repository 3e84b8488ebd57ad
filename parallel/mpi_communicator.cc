// MPI backend of Communicator (see mpi_communicator.h for the reduction
// order that makes sums deterministic).
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/mpi_check.h"
#include "parallel/peer_watch.h"

namespace baton {
namespace {

bool MpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// MPI counts are int; a buffer past that is refused rather than truncated.
absl::Status CheckCount(const char* op, int64_t count) {
  if (count > INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", count, " elements exceed MPI's int count; split the buffer"));
  }
  return absl::OkStatus();
}

// out[i] = ((chunks[0][i] + chunks[1][i]) + ...) + chunks[n-1][i].
template <typename T>
void FoldInRankOrder(const T* chunks, int n, int64_t count, T* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = chunks[i];
  for (int r = 1; r < n; ++r) {
    const T* c = chunks + r * count;
    for (int64_t i = 0; i < count; ++i) out[i] += c[i];
  }
}

// Signed overflow is undefined; i32 sums wrap like two's complement instead.
template <>
void FoldInRankOrder<int32_t>(const int32_t* chunks, int n, int64_t count, int32_t* out) {
  for (int64_t i = 0; i < count; ++i) {
    uint32_t acc = static_cast<uint32_t>(chunks[i]);
    for (int r = 1; r < n; ++r) acc += static_cast<uint32_t>(chunks[r * count + i]);
    out[i] = static_cast<int32_t>(acc);
  }
}

void Fold(DType dtype, const void* chunks, int n, int64_t count, void* out) {
  switch (dtype) {
    case DType::kF32:
      FoldInRankOrder(static_cast<const float*>(chunks), n, count, static_cast<float*>(out));
      break;
    case DType::kF64:
      FoldInRankOrder(static_cast<const double*>(chunks), n, count, static_cast<double*>(out));
      break;
    case DType::kI32:
      FoldInRankOrder(static_cast<const int32_t*>(chunks), n, count, static_cast<int32_t*>(out));
      break;
    default:
      BATON_CHECK_MSG(false, "Fold: dtype was not checked");
  }
}

class MpiRequest final : public CommRequest {
 public:
  MpiRequest(MPI_Request req, Tensor buffer, bool is_recv, int peer, int tag, std::string context)
      : req_(req), buffer_(std::move(buffer)), is_recv_(is_recv), peer_(peer), tag_(tag),
        context_(std::move(context)) {}

  ~MpiRequest() override {
    if (req_ == MPI_REQUEST_NULL || MpiFinalized()) return;
    // A peer timed out: the job is about to abort, and waiting on a dead
    // peer would hang; the request (and its buffer) is leaked instead.
    if (PeerWatchTripped()) {
      new Tensor(std::move(buffer_));
      return;
    }
    // Unwaited (an error path): a receive is cancelled, a send completes, so
    // MPI never writes into or reads from freed memory.
    if (is_recv_) MPI_Cancel(&req_);
    (void)WaitWithDeadline(&req_, MPI_STATUS_IGNORE, [this] { return Describe(); });
  }

  bool Test() override {
    if (req_ == MPI_REQUEST_NULL) return true;
    int done = 0;  // get_status drives progress but leaves the request (and its status) to Wait
    MPI_Request_get_status(req_, &done, MPI_STATUS_IGNORE);
    return done != 0;
  }

  absl::Status Wait() override {
    if (req_ == MPI_REQUEST_NULL) return absl::OkStatus();
    MPI_Status status;
    status.MPI_ERROR = MPI_SUCCESS;  // MPI_Wait leaves it as it was: never read stack garbage
    int code = MPI_SUCCESS;
    absl::Status st = WaitWithDeadline(&req_, &status, [this] { return Describe(); }, &code);
    if (st.code() == absl::StatusCode::kDeadlineExceeded) return st;  // req_ stays pending
    req_ = MPI_REQUEST_NULL;
    int error_class = MPI_SUCCESS;
    if (!st.ok()) MPI_Error_class(code, &error_class);
    if (error_class == MPI_ERR_TRUNCATE || status.MPI_ERROR == MPI_ERR_TRUNCATE) {
      return absl::InvalidArgumentError(absl::StrCat(
          Describe(), ": the message is longer than the buffer's ", buffer_.nbytes(),
          " bytes (sender and receiver disagree on the shape; ", st.message(), ")"));
    }
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat(Describe(), ": ", st.message()));
    if (is_recv_) {
      int got = 0;
      MPI_Get_count(&status, MPI_BYTE, &got);
      if (static_cast<size_t>(got) != buffer_.nbytes()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Describe(), ": received ", got, " bytes, but the buffer holds ",
                         buffer_.nbytes(), " (sender and receiver disagree on the shape)"));
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string Describe() const {
    return absl::StrCat(context_, is_recv_ ? " recv from rank " : " send to rank ", peer_,
                        " tag ", tag_, " ", buffer_.DebugString());
  }

  MPI_Request req_;
  Tensor buffer_;  // keeps the storage alive until the transfer is done
  bool is_recv_;
  int peer_, tag_;
  std::string context_;
};

}  // namespace

MPI_Datatype MpiDatatypeOf(DType dtype) {
  switch (dtype) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kF64: return MPI_DOUBLE;
    case DType::kI32: return MPI_INT32_T;
    case DType::kBF16:
    case DType::kF16: return MPI_UINT16_T;
  }
  return MPI_BYTE;
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(MPI_Comm parent, int color,
                                                                         int key, std::string name) {
  MPI_Comm comm = MPI_COMM_NULL;
  BATON_CHECK_MPI(MPI_Comm_split(parent, color, key, &comm));
  BATON_CHECK_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(comm, std::move(name)));
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Dup(MPI_Comm parent,
                                                                      std::string name) {
  MPI_Comm comm = MPI_COMM_NULL;
  BATON_CHECK_MPI(MPI_Comm_dup(parent, &comm));
  BATON_CHECK_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(comm, std::move(name)));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name)
    : comm_(comm), name_(std::move(name)), members_(WorldRanksOf(comm)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

absl::Status MpiCommunicator::WaitCollective(MPI_Request* req, const char* op, const char* call) const {
  int code = MPI_SUCCESS;
  absl::Status st = WaitWithDeadline(req, MPI_STATUS_IGNORE, [&] {
    return absl::StrCat(name_, " ", op, " (", call, ") over ", members_);
  }, &code);
  if (st.ok() || st.code() == absl::StatusCode::kDeadlineExceeded) return st;
  return Context(st, op);
}

MpiCommunicator::~MpiCommunicator() {
  if (gather_comm_ != MPI_COMM_NULL && !MpiFinalized()) MPI_Comm_free(&gather_comm_);
  if (comm_ != MPI_COMM_NULL && !MpiFinalized()) MPI_Comm_free(&comm_);
}

absl::Status MpiCommunicator::Context(absl::Status st, const char* op) const {
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat(name_, " ", op, ": ", st.message()));
}

absl::Status MpiCommunicator::AllReduceSum(Tensor& t) {
  constexpr const char* kOp = "all_reduce_sum";
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, t, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckReduceDType(kOp, t));
  BATON_RETURN_IF_ERROR(CheckCount(kOp, t.numel()));
  if (size_ == 1) return absl::OkStatus();
  const int n = size_;
  const int64_t numel = t.numel();
  const size_t esize = DTypeSize(t.dtype());
  // Chunk j (elements counts[j] at displs[j]) is folded by rank j.
  std::vector<int> counts(n), displs(n), recv_counts(n), recv_displs(n);
  for (int j = 0, at = 0; j < n; ++j) {
    counts[j] = static_cast<int>(numel / n + (j < numel % n ? 1 : 0));
    displs[j] = at;
    at += counts[j];
  }
  const int mine = counts[rank_];
  for (int j = 0; j < n; ++j) {
    recv_counts[j] = mine;
    recv_displs[j] = j * mine;
  }
  scratch_.resize(std::max(scratch_.size(), static_cast<size_t>(n) * mine * esize));
  MPI_Datatype type = MpiDatatypeOf(t.dtype());
  char* data = static_cast<char*>(t.raw());
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(FromMpi(MPI_Ialltoallv(data, counts.data(), displs.data(), type, scratch_.data(),
                                                       recv_counts.data(), recv_displs.data(), type, comm_, &req),
                                        "MPI_Ialltoallv", __FILE__, __LINE__),
                                kOp));
  BATON_RETURN_IF_ERROR(WaitCollective(&req, kOp, "MPI_Ialltoallv"));
  Fold(t.dtype(), scratch_.data(), n, mine, data + displs[rank_] * esize);
  BATON_RETURN_IF_ERROR(Context(FromMpi(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(),
                                                        displs.data(), type, comm_, &req),
                                        "MPI_Iallgatherv", __FILE__, __LINE__),
                                kOp));
  return WaitCollective(&req, kOp, "MPI_Iallgatherv");
}

// IAllReduceSum's two phases, as in AllReduceSum: an all-to-all sends
// chunk j of every rank to rank j, which folds them in rank order; an
// all-gather (on gather_comm_) hands the folded chunks back. The
// communicator starts second phases in the order the requests began, so
// every rank issues the same collectives in the same order on each comm.
class MpiAllReduceRequest final : public CommRequest {
 public:
  MpiAllReduceRequest(MpiCommunicator& owner, Tensor t) : owner_(owner), t_(std::move(t)) {}
  ~MpiAllReduceRequest() override {
    // After a peer timed out the job is about to abort: leave the request.
    if (PeerWatchTripped()) {
      new Tensor(std::move(t_));
      new std::vector<char>(std::move(scratch_));
      return;
    }
    if (!MpiFinalized()) (void)Wait();
  }

  absl::Status Start() {
    const int n = owner_.size_, rank = owner_.rank_;
    const int64_t numel = t_.numel();
    counts_.resize(n);
    displs_.resize(n);
    for (int j = 0, at = 0; j < n; ++j) {
      counts_[j] = static_cast<int>(numel / n + (j < numel % n ? 1 : 0));
      displs_[j] = at;
      at += counts_[j];
    }
    recv_counts_.assign(n, counts_[rank]);
    recv_displs_.resize(n);
    for (int j = 0; j < n; ++j) recv_displs_[j] = j * counts_[rank];
    scratch_.resize(static_cast<size_t>(n) * counts_[rank] * DTypeSize(t_.dtype()));
    const MPI_Datatype type = MpiDatatypeOf(t_.dtype());
    status_ = Check(MPI_Ialltoallv(t_.raw(), counts_.data(), displs_.data(), type, scratch_.data(),
                                   recv_counts_.data(), recv_displs_.data(), type, owner_.comm_, &req_),
                    "MPI_Ialltoallv");
    if (status_.ok()) owner_.started_.push_back(this);
    return status_;
  }

  // Phase one done (or failed)? Polls or blocks.
  bool FirstPhaseDone(bool block) {
    if (!status_.ok() || req_ == MPI_REQUEST_NULL) return true;
    int done = 1;
    status_ = block ? owner_.WaitCollective(&req_, "iall_reduce_sum", "MPI_Ialltoallv")
                    : Check(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return !status_.ok() || done != 0;
  }

  // Folds this rank's chunk and starts the all-gather (the communicator calls it in order).
  void StartSecondPhase() {
    second_ = true;
    if (!status_.ok()) return;
    Fold(t_.dtype(), scratch_.data(), owner_.size_, counts_[owner_.rank_],
         static_cast<char*>(t_.raw()) + displs_[owner_.rank_] * DTypeSize(t_.dtype()));
    status_ = Check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, t_.raw(), counts_.data(),
                                    displs_.data(), MpiDatatypeOf(t_.dtype()), owner_.gather_comm_, &req_),
                    "MPI_Iallgatherv");
  }

  bool Test() override {
    if (!second_) owner_.Advance(nullptr);
    if (!second_) return !status_.ok();
    if (!status_.ok() || req_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    status_ = Check(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return !status_.ok() || done != 0;
  }

  absl::Status Wait() override {
    if (!second_) owner_.Advance(this);
    if (status_.ok() && req_ != MPI_REQUEST_NULL) {
      status_ = owner_.WaitCollective(&req_, "iall_reduce_sum", "MPI_Iallgatherv");
    }
    req_ = MPI_REQUEST_NULL;
    return status_;
  }

 private:
  absl::Status Check(int code, const char* call) {
    absl::Status st = FromMpi(code, call, __FILE__, __LINE__);
    if (st.ok()) return st;
    return absl::Status(st.code(), absl::StrCat(owner_.name_, " iall_reduce_sum: ", st.message()));
  }

  MpiCommunicator& owner_;
  Tensor t_;  // keeps the storage alive
  bool second_ = false;
  MPI_Request req_ = MPI_REQUEST_NULL;
  std::vector<int> counts_, displs_, recv_counts_, recv_displs_;
  std::vector<char> scratch_;
  absl::Status status_;
};

absl::Status MpiCommunicator::EnsureGatherComm() {
  if (gather_comm_ != MPI_COMM_NULL) return absl::OkStatus();
  BATON_CHECK_MPI(MPI_Comm_dup(comm_, &gather_comm_));
  BATON_CHECK_MPI(MPI_Comm_set_errhandler(gather_comm_, MPI_ERRORS_RETURN));
  return absl::OkStatus();
}

void MpiCommunicator::Advance(MpiAllReduceRequest* until) {
  size_t done = 0;
  for (; done < started_.size(); ++done) {
    MpiAllReduceRequest* r = started_[done];
    const bool block = until != nullptr;
    if (!r->FirstPhaseDone(block)) break;
    r->StartSecondPhase();
    if (r == until) {
      ++done;
      break;
    }
  }
  started_.erase(started_.begin(), started_.begin() + static_cast<std::ptrdiff_t>(done));
}

absl::StatusOr<CommRequestPtr> MpiCommunicator::IAllReduceSum(Tensor& t) {
  constexpr const char* kOp = "iall_reduce_sum";
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, t, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckReduceDType(kOp, t));
  BATON_RETURN_IF_ERROR(CheckCount(kOp, t.numel()));
  if (size_ == 1) return Communicator::IAllReduceSum(t);
  BATON_RETURN_IF_ERROR(Context(EnsureGatherComm(), kOp));
  auto req = std::make_unique<MpiAllReduceRequest>(*this, t);
  BATON_RETURN_IF_ERROR(req->Start());
  return CommRequestPtr(std::move(req));
}

absl::Status MpiCommunicator::ReduceScatterSum(const Tensor& in, Tensor& out) {
  constexpr const char* kOp = "reduce_scatter_sum";
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, in, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, out, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckReduceDType(kOp, in));
  BATON_RETURN_IF_ERROR(CheckShardShapes(kOp, in, out, size_));
  BATON_RETURN_IF_ERROR(CheckCount(kOp, out.numel()));
  const int64_t count = out.numel();
  const size_t bytes = out.nbytes();
  if (size_ == 1) {
    if (in.raw() != out.raw()) std::memmove(out.raw(), in.raw(), bytes);
    return absl::OkStatus();
  }
  scratch_.resize(std::max(scratch_.size(), static_cast<size_t>(size_) * bytes));
  MPI_Datatype type = MpiDatatypeOf(in.dtype());
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(FromMpi(MPI_Ialltoall(in.raw(), static_cast<int>(count), type, scratch_.data(),
                                                      static_cast<int>(count), type, comm_, &req),
                                        "MPI_Ialltoall", __FILE__, __LINE__),
                                kOp));
  BATON_RETURN_IF_ERROR(WaitCollective(&req, kOp, "MPI_Ialltoall"));
  Fold(in.dtype(), scratch_.data(), size_, count, out.raw());
  return absl::OkStatus();
}

absl::Status MpiCommunicator::AllGather(const Tensor& in, Tensor& out) {
  constexpr const char* kOp = "all_gather";
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, in, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, out, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckShardShapes(kOp, out, in, size_));
  BATON_RETURN_IF_ERROR(CheckCount(kOp, static_cast<int64_t>(in.nbytes())));
  const int bytes = static_cast<int>(in.nbytes());
  char* mine = static_cast<char*>(out.raw()) + static_cast<size_t>(rank_) * bytes;
  // A shard that already sits at its place in `out` (Megatron's layout) is
  // gathered in place; MPI forbids other overlaps, so they are refused.
  const bool in_place = in.raw() == mine;
  const char* in_begin = static_cast<const char*>(in.raw());
  const char* out_begin = static_cast<const char*>(out.raw());
  if (!in_place && in_begin < out_begin + out.nbytes() && out_begin < in_begin + bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        name_, " ", kOp, ": input overlaps the output but is not this rank's shard of it"));
  }
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(FromMpi(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.raw(), bytes, MPI_BYTE,
                                                       out.raw(), bytes, MPI_BYTE, comm_, &req),
                                        "MPI_Iallgather", __FILE__, __LINE__),
                                kOp));
  return WaitCollective(&req, kOp, "MPI_Iallgather");
}

absl::Status MpiCommunicator::Broadcast(Tensor& t, int root) {
  constexpr const char* kOp = "broadcast";
  BATON_RETURN_IF_ERROR(CheckCommTensor(kOp, t, Device::kCpu));
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(absl::StrCat(name_, " ", kOp, ": root ", root,
                                                   " is outside the group of ", size_, " ranks"));
  }
  BATON_RETURN_IF_ERROR(CheckCount(kOp, static_cast<int64_t>(t.nbytes())));
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(FromMpi(MPI_Ibcast(t.raw(), static_cast<int>(t.nbytes()), MPI_BYTE, root, comm_, &req),
                                        "MPI_Ibcast", __FILE__, __LINE__),
                                kOp));
  return WaitCollective(&req, kOp, "MPI_Ibcast");
}

absl::Status MpiCommunicator::Barrier() {
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(FromMpi(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier", __FILE__, __LINE__), "barrier"));
  return WaitCollective(&req, "barrier", "MPI_Ibarrier");
}

absl::StatusOr<CommRequestPtr> MpiCommunicator::ISend(const Tensor& t, int peer, int tag) {
  constexpr const char* kOp = "isend";
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCpu), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckPeer(kOp, *this, peer, tag), kOp));
  BATON_RETURN_IF_ERROR(CheckCount(kOp, static_cast<int64_t>(t.nbytes())));
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(
      FromMpi(MPI_Isend(t.raw(), static_cast<int>(t.nbytes()), MPI_BYTE, peer, tag, comm_, &req),
              "MPI_Isend", __FILE__, __LINE__),
      kOp));
  return CommRequestPtr(new MpiRequest(req, t, /*is_recv=*/false, peer, tag, name_));
}

absl::StatusOr<CommRequestPtr> MpiCommunicator::IRecv(Tensor& t, int peer, int tag) {
  constexpr const char* kOp = "irecv";
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCpu), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckPeer(kOp, *this, peer, tag), kOp));
  BATON_RETURN_IF_ERROR(CheckCount(kOp, static_cast<int64_t>(t.nbytes())));
  MPI_Request req = MPI_REQUEST_NULL;
  BATON_RETURN_IF_ERROR(Context(
      FromMpi(MPI_Irecv(t.raw(), static_cast<int>(t.nbytes()), MPI_BYTE, peer, tag, comm_, &req),
              "MPI_Irecv", __FILE__, __LINE__),
      kOp));
  return CommRequestPtr(new MpiRequest(req, t, /*is_recv=*/true, peer, tag, name_));
}

absl::StatusOr<MeshComms> CreateMpiMeshComms(const Mesh& mesh, MPI_Comm world) {
  int world_size = 0, world_rank = 0;
  BATON_CHECK_MPI(MPI_Comm_size(world, &world_size));
  BATON_CHECK_MPI(MPI_Comm_rank(world, &world_rank));
  if (world_size != mesh.world_size() || world_rank != mesh.rank()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mesh ", mesh.DebugString(), " does not match MPI rank ", world_rank, " of ", world_size));
  }
  MeshComms comms;
  BATON_ASSIGN_OR_RETURN(comms.world, MpiCommunicator::Dup(world, "world"));
  BATON_ASSIGN_OR_RETURN(comms.tp, MpiCommunicator::Create(world, mesh.GroupId(MeshAxis::kTp),
                                                           mesh.tp_rank(), "tp"));
  BATON_ASSIGN_OR_RETURN(comms.dp, MpiCommunicator::Create(world, mesh.GroupId(MeshAxis::kDp),
                                                           mesh.dp_rank(), "dp"));
  BATON_ASSIGN_OR_RETURN(comms.pp, MpiCommunicator::Create(world, mesh.GroupId(MeshAxis::kPp),
                                                           mesh.pp_rank(), "pp"));
  return comms;
}

}  // namespace baton
