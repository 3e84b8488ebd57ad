// Backend-independent parts of the communicator interface: blocking
// send/recv as non-blocking + wait, and the argument checks every backend
// runs before touching a buffer (see communicator.h).
#include "parallel/communicator.h"

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

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

namespace {

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "self"; }
  absl::Status AllReduceSum(Tensor&) override { return absl::OkStatus(); }
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override { return Copy(in, out); }
  absl::Status AllGather(const Tensor& in, Tensor& out) override { return Copy(in, out); }
  absl::Status Broadcast(Tensor&, int root) override { return CheckPeer("broadcast", *this, root, 0); }
  absl::Status Barrier() override { return absl::OkStatus(); }
  absl::StatusOr<CommRequestPtr> ISend(const Tensor&, int peer, int) override { return NoPeer("send", peer); }
  absl::StatusOr<CommRequestPtr> IRecv(Tensor&, int peer, int) override { return NoPeer("recv", peer); }

 private:
  static absl::Status Copy(const Tensor& in, Tensor& out) {
    BATON_RETURN_IF_ERROR(CheckShardShapes("self copy", in, out, 1));
    if (in.raw() != out.raw()) out.CopyFrom(in);
    return absl::OkStatus();
  }
  static absl::Status NoPeer(const char* op, int peer) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " to peer ", peer, " in a group of one process (nothing to talk to)"));
  }
};

}  // namespace

std::unique_ptr<Communicator> MakeSelfCommunicator() { return std::make_unique<SelfCommunicator>(); }

}  // namespace baton
