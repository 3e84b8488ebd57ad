// NCCL backend of Communicator (see nccl_communicator.h for how its
// semantics differ from MPI's). Compiled only with BATON_HAVE_CUDA.
#ifdef BATON_HAVE_CUDA

#include "parallel/nccl_communicator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/mpi_check.h"
#include "parallel/peer_watch.h"

#define BATON_CHECK_CUDA_IN_NCCL(x) \
  BATON_RETURN_IF_ERROR(::baton::FromCudaInNccl((x), #x, __FILE__, __LINE__))

namespace baton {
namespace {

absl::StatusOr<ncclDataType_t> NcclTypeOf(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kF64: return ncclFloat64;
    case DType::kI32: return ncclInt32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
  }
  return absl::InvalidArgumentError(absl::StrCat("nccl: no NCCL type for ", DTypeName(dtype)));
}

}  // namespace

// A completion event, shared by a request and, until GroupEnd records it,
// the communicator's list of events to record.
struct NcclEvent {
  cudaEvent_t event = nullptr;
  bool recorded = false;
  ~NcclEvent() {
    if (event != nullptr) cudaEventDestroy(event);
  }
};

namespace {

// Done when the event recorded after the enqueued transfer has fired.
class NcclRequest final : public CommRequest {
 public:
  NcclRequest(std::shared_ptr<NcclEvent> event, Tensor buffer, std::shared_ptr<NcclWatch> watch)
      : event_(std::move(event)), buffer_(std::move(buffer)), watch_(std::move(watch)) {}
  ~NcclRequest() override {
    // NCCL work cannot be cancelled: wait for it so the buffer may be freed.
    // (A request of a group that was never ended has nothing to wait for;
    // after an abort the kernels have ended.)
    if (event_ != nullptr && event_->recorded) cudaEventSynchronize(event_->event);
  }
  absl::Status Wait() override {
    if (event_ == nullptr) return absl::OkStatus();
    if (!event_->recorded) {
      return absl::FailedPreconditionError(
          "nccl: Wait on a send/receive whose group has not ended (call GroupEnd first)");
    }
    const cudaEvent_t ev = event_->event;
    absl::Status st = NcclWatchedWait(*watch_, [ev] { return cudaEventQuery(ev); }, PeerTimeoutSeconds(),
                                      "send/receive wait");
    event_ = nullptr;
    return st;
  }
  bool Test() override {
    if (event_ == nullptr) return true;
    return event_->recorded && cudaEventQuery(event_->event) == cudaSuccess;
  }

 private:
  std::shared_ptr<NcclEvent> event_;
  Tensor buffer_;  // keeps the device memory alive until the transfer is done
  std::shared_ptr<NcclWatch> watch_;
};

}  // namespace

absl::Status FromNccl(ncclResult_t result, const char* expr, const char* file, int line) {
  if (result == ncclSuccess) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case ncclRemoteError:
    case ncclSystemError:
      code = absl::StatusCode::kUnavailable;
      break;
    default:
      break;
  }
  return absl::Status(code, absl::StrCat(ncclGetErrorString(result), " (NCCL ", static_cast<int>(result),
                                         ") in ", expr, " at ", file, ":", line));
}

absl::Status FromCudaInNccl(cudaError_t error, const char* expr, const char* file, int line) {
  if (error == cudaSuccess) return absl::OkStatus();
  absl::StatusCode code = error == cudaErrorMemoryAllocation ? absl::StatusCode::kResourceExhausted
                                                             : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(cudaGetErrorName(error), ": ", cudaGetErrorString(error),
                                         " in ", expr, " at ", file, ":", line));
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(MPI_Comm group,
                                                                           cudaStream_t stream,
                                                                           std::string name) {
  int rank = 0, size = 0;
  BATON_CHECK_MPI(MPI_Comm_rank(group, &rank));
  BATON_CHECK_MPI(MPI_Comm_size(group, &size));
  ncclUniqueId id{};
  if (rank == 0) BATON_CHECK_NCCL(ncclGetUniqueId(&id));
  BATON_CHECK_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, group));
  ncclComm_t comm = nullptr;
  absl::Status st = FromNccl(ncclCommInitRank(&comm, size, id, rank), "ncclCommInitRank",
                             __FILE__, __LINE__);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("nccl ", name, " (rank ", rank, " of ", size,
                                                "): ", st.message()));
  }
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(comm, stream, rank, size, std::move(name)));
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, cudaStream_t stream, int rank, int size,
                                   std::string name)
    : comm_(comm), stream_(stream), rank_(rank), size_(size), name_(std::move(name)),
      watch_(std::make_shared<NcclWatch>(NcclWatch{comm, name_, false})) {}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr && !watch_->aborted) ncclCommDestroy(comm_);  // ncclCommAbort freed it already
  if (barrier_dev_ != nullptr) cudaFree(barrier_dev_);
}

absl::Status NcclCommunicator::Usable(const char* op) const {
  if (!watch_->aborted) return absl::OkStatus();  // an aborted comm's handle is freed: no call may reach NCCL
  return absl::UnavailableError(absl::StrCat("nccl ", name_, " ", op, ": the communicator was aborted earlier"));
}

absl::Status NcclCommunicator::Context(absl::Status st, const char* op) const {
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat("nccl ", name_, " ", op, ": ", st.message()));
}

absl::Status NcclCommunicator::AllReduceSum(Tensor& t) {
  constexpr const char* kOp = "all_reduce_sum";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCuda), kOp));
  BATON_ASSIGN_OR_RETURN(ncclDataType_t type, NcclTypeOf(t.dtype()));
  return Context(FromNccl(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), type,
                                        ncclSum, comm_, stream_),
                          "ncclAllReduce", __FILE__, __LINE__),
                 kOp);
}

absl::Status NcclCommunicator::AllReduceMax(Tensor& t) {
  constexpr const char* kOp = "all_reduce_max";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCuda), kOp));
  BATON_ASSIGN_OR_RETURN(ncclDataType_t type, NcclTypeOf(t.dtype()));
  return Context(FromNccl(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), type,
                                        ncclMax, comm_, stream_),
                          "ncclAllReduce(max)", __FILE__, __LINE__),
                 kOp);
}

absl::Status NcclCommunicator::ReduceScatterSum(const Tensor& in, Tensor& out) {
  constexpr const char* kOp = "reduce_scatter_sum";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, in, Device::kCuda), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, out, Device::kCuda), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckShardShapes(kOp, in, out, size_), kOp));
  BATON_ASSIGN_OR_RETURN(ncclDataType_t type, NcclTypeOf(in.dtype()));
  return Context(FromNccl(ncclReduceScatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()),
                                            type, ncclSum, comm_, stream_),
                          "ncclReduceScatter", __FILE__, __LINE__),
                 kOp);
}

absl::Status NcclCommunicator::AllGather(const Tensor& in, Tensor& out) {
  constexpr const char* kOp = "all_gather";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, in, Device::kCuda), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, out, Device::kCuda), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckShardShapes(kOp, out, in, size_), kOp));
  BATON_ASSIGN_OR_RETURN(ncclDataType_t type, NcclTypeOf(in.dtype()));
  // In place when `in` is this rank's shard of `out` (NCCL detects it).
  return Context(FromNccl(ncclAllGather(in.raw(), out.raw(), static_cast<size_t>(in.numel()), type,
                                        comm_, stream_),
                          "ncclAllGather", __FILE__, __LINE__),
                 kOp);
}

absl::Status NcclCommunicator::Broadcast(Tensor& t, int root) {
  constexpr const char* kOp = "broadcast";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCuda), kOp));
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(absl::StrCat("nccl ", name_, " ", kOp, ": root ", root,
                                                   " is outside the group of ", size_, " ranks"));
  }
  return Context(FromNccl(ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclInt8, root, comm_, stream_),
                          "ncclBroadcast", __FILE__, __LINE__),
                 kOp);
}

absl::Status NcclCommunicator::Barrier() {
  BATON_RETURN_IF_ERROR(Usable("barrier"));
  if (barrier_dev_ == nullptr) {
    BATON_CHECK_CUDA_IN_NCCL(cudaMalloc(&barrier_dev_, sizeof(int32_t)));
    BATON_CHECK_CUDA_IN_NCCL(cudaMemsetAsync(barrier_dev_, 0, sizeof(int32_t), stream_));
  }
  BATON_RETURN_IF_ERROR(Context(FromNccl(ncclAllReduce(barrier_dev_, barrier_dev_, 1, ncclInt32,
                                                       ncclSum, comm_, stream_),
                                         "ncclAllReduce", __FILE__, __LINE__),
                                "barrier"));
  return Synchronize();
}

absl::Status NcclCommunicator::Synchronize() {
  const cudaStream_t stream = stream_;
  return NcclWatchedWait(*watch_, [stream] { return cudaStreamQuery(stream); }, PeerTimeoutSeconds(), "synchronize");
}

absl::Status NcclCommunicator::GroupStart() {
  BATON_RETURN_IF_ERROR(
      Context(FromNccl(ncclGroupStart(), "ncclGroupStart", __FILE__, __LINE__), "group_start"));
  ++group_depth_;
  return absl::OkStatus();
}

absl::Status NcclCommunicator::GroupEnd() {
  if (group_depth_ == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("nccl ", name_, " group_end: no group is open (GroupStart first)"));
  }
  const absl::Status st =
      Context(FromNccl(ncclGroupEnd(), "ncclGroupEnd", __FILE__, __LINE__), "group_end");
  if (--group_depth_ > 0) return st;
  // The group's transfers are enqueued now: their requests complete after them.
  std::vector<std::shared_ptr<NcclEvent>> events = std::move(group_events_);
  group_events_.clear();
  BATON_RETURN_IF_ERROR(st);
  for (const std::shared_ptr<NcclEvent>& e : events) {
    BATON_CHECK_CUDA_IN_NCCL(cudaEventRecord(e->event, stream_));
    e->recorded = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<CommRequestPtr> NcclCommunicator::MakeRequest(const Tensor& t) {
  auto event = std::make_shared<NcclEvent>();
  BATON_CHECK_CUDA_IN_NCCL(cudaEventCreateWithFlags(&event->event, cudaEventDisableTiming));
  if (group_depth_ > 0) {
    group_events_.push_back(event);
  } else {
    BATON_CHECK_CUDA_IN_NCCL(cudaEventRecord(event->event, stream_));
    event->recorded = true;
  }
  return CommRequestPtr(new NcclRequest(std::move(event), t, watch_));
}

absl::StatusOr<CommRequestPtr> NcclCommunicator::ISend(const Tensor& t, int peer, int tag) {
  constexpr const char* kOp = "isend";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCuda), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckPeer(kOp, *this, peer, tag), kOp));
  // NCCL has no tags: messages between two ranks match in posting order.
  BATON_RETURN_IF_ERROR(Context(
      FromNccl(ncclSend(t.raw(), t.nbytes(), ncclInt8, peer, comm_, stream_), "ncclSend", __FILE__,
               __LINE__),
      kOp));
  return MakeRequest(t);
}

absl::StatusOr<CommRequestPtr> NcclCommunicator::IRecv(Tensor& t, int peer, int tag) {
  constexpr const char* kOp = "irecv";
  BATON_RETURN_IF_ERROR(Usable(kOp));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor(kOp, t, Device::kCuda), kOp));
  BATON_RETURN_IF_ERROR(Context(CheckPeer(kOp, *this, peer, tag), kOp));
  BATON_RETURN_IF_ERROR(Context(
      FromNccl(ncclRecv(t.raw(), t.nbytes(), ncclInt8, peer, comm_, stream_), "ncclRecv", __FILE__,
               __LINE__),
      kOp));
  return MakeRequest(t);
}

}  // namespace baton

#endif  // BATON_HAVE_CUDA
