// Backend-independent parts of the communicator interface: blocking
// send/recv as non-blocking + wait, and the argument checks every backend
// runs before touching a buffer (see communicator.h).
#include "parallel/communicator.h"

#include "absl/strings/str_cat.h"

namespace baton {

absl::Status WaitAll(std::vector<CommRequestPtr>& requests) {
  absl::Status first;
  for (CommRequestPtr& r : requests) {
    if (r == nullptr) continue;
    absl::Status st = r->Wait();
    if (first.ok() && !st.ok()) first = st;
    r.reset();
  }
  return first;
}

namespace {
class DoneRequest final : public CommRequest {
 public:
  absl::Status Wait() override { return absl::OkStatus(); }
  bool Test() override { return true; }
};
}  // namespace

absl::StatusOr<CommRequestPtr> Communicator::IAllReduceSum(Tensor& t) {
  BATON_RETURN_IF_ERROR(AllReduceSum(t));
  return CommRequestPtr(new DoneRequest());
}

absl::Status Communicator::Send(const Tensor& t, int peer, int tag) {
  BATON_ASSIGN_OR_RETURN(CommRequestPtr req, ISend(t, peer, tag));
  return req->Wait();
}

absl::Status Communicator::Recv(Tensor& t, int peer, int tag) {
  BATON_ASSIGN_OR_RETURN(CommRequestPtr req, IRecv(t, peer, tag));
  return req->Wait();
}

absl::Status CheckCommTensor(const char* op, const Tensor& t, Device device) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(op, ": tensor is undefined"));
  if (t.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": tensor ", t.DebugString(),
                                                   " must be on ", DeviceName(device)));
  }
  if (!t.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": tensor ", t.DebugString(), " must be contiguous"));
  }
  return absl::OkStatus();
}

absl::Status CheckReduceDType(const char* op, const Tensor& t) {
  switch (t.dtype()) {
    case DType::kF32:
    case DType::kF64:
    case DType::kI32:
      return absl::OkStatus();
    default:
      return absl::UnimplementedError(
          absl::StrCat(op, ": sums of ", DTypeName(t.dtype()), " are not supported (f32, f64, i32)"));
  }
}

absl::Status CheckPeer(const char* op, const Communicator& comm, int peer, int tag) {
  if (peer < 0 || peer >= comm.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": peer ", peer, " is outside the group of ", comm.size(), " ranks"));
  }
  if (tag < 0 || tag > kMaxCommTag) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": tag ", tag, " is outside [0, ", kMaxCommTag, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckShardShapes(const char* op, const Tensor& full, const Tensor& shard, int size) {
  if (full.dtype() != shard.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dtypes differ: ", full.DebugString(),
                                                   " vs ", shard.DebugString()));
  }
  bool ok = full.rank() >= 1 && full.rank() == shard.rank() &&
            full.dim(0) == int64_t{size} * shard.dim(0);
  for (int i = 1; ok && i < full.rank(); ++i) ok = full.dim(i) == shard.dim(i);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": full ", full.DebugString(), " must be shard ", shard.DebugString(),
        " with dim 0 times the group size ", size));
  }
  return absl::OkStatus();
}

}  // namespace baton
