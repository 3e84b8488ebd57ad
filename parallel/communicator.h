// One interface for the collectives and point-to-point transfers that
// tensor, pipeline and data parallelism need, with one instance per group
// (world, tp, dp, pp; built from a Mesh). Backends: MpiCommunicator (host
// buffers, the CPU path), UcxP2pCommunicator (host point-to-point over UCX
// for pipeline activations, collectives via MPI) and NcclCommunicator
// (device buffers, CUDA builds only). Every call returns a Status; a
// buffer of the wrong shape, dtype or device is InvalidArgument, never a
// hang or a crash. Invariant: a reduction gives the same bits on every
// rank, and the MPI backend gives the same bits on every run (the sum is a
// fixed left-to-right fold over group ranks 0..n-1, see docs/parallel.md).
//
// Shapes: tensors are contiguous; ReduceScatterSum and AllGather split and
// concatenate along dim 0 in group-rank order: full = [size·m, ...],
// shard = [m, ...]. All ranks of a group call a collective with the same
// shapes and dtype (as in MPI; this is not checked by the collectives).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

// A pending ISend/IRecv. Wait() blocks until it is done and reports a
// receive of the wrong size. Destroying a request that was not waited for
// cancels a receive and completes a send (so its buffer is safe to free),
// never leaking a transfer into memory that is gone.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual absl::Status Wait() = 0;
  // Advances the transfer without blocking; true once it is complete (Wait
  // then returns at once). Errors surface in Wait. Host backends only make
  // progress inside MPI/UCX calls, so callers poll this between compute.
  virtual bool Test() { return false; }
};
using CommRequestPtr = std::unique_ptr<CommRequest>;

// Waits for every request (even after one fails) and returns the first error.
absl::Status WaitAll(std::vector<CommRequestPtr>& requests);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // in this group, 0..size()-1
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "mpi", "ucx", "nccl"

  // Collectives. Reductions: f32, f64, i32 (bf16/f16: Unimplemented).
  virtual absl::Status AllReduceSum(Tensor& t) = 0;                              // in place
  virtual absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) = 0;      // in [size·m, ...], out [m, ...]
  virtual absl::Status AllGather(const Tensor& in, Tensor& out) = 0;             // in [m, ...], out [size·m, ...]
  virtual absl::Status Broadcast(Tensor& t, int root) = 0;
  virtual absl::Status Barrier() = 0;
  // AllReduceSum started without blocking: `t` must stay alive and untouched
  // until the request is waited for; the result has the same bits as
  // AllReduceSum's. Lets data parallelism overlap the gradient sum of early
  // buckets with the backward of later layers. Default: the blocking call,
  // returning a request that is already complete.
  virtual absl::StatusOr<CommRequestPtr> IAllReduceSum(Tensor& t);

  // Point-to-point (any dtype). tag in [0, 2^15): MPI guarantees no more.
  // A message matches only a receive with the same peer and tag; messages
  // with the same (peer, tag) arrive in the order they were sent.
  virtual absl::StatusOr<CommRequestPtr> ISend(const Tensor& t, int peer, int tag) = 0;
  virtual absl::StatusOr<CommRequestPtr> IRecv(Tensor& t, int peer, int tag) = 0;
  virtual absl::Status Send(const Tensor& t, int peer, int tag);  // ISend + Wait
  virtual absl::Status Recv(Tensor& t, int peer, int tag);        // IRecv + Wait
};

inline constexpr int kMaxCommTag = 32767;  // MPI_TAG_UB is at least this

// A group of one process: collectives leave their tensors as they are (an
// all-gather or reduce-scatter copies), point-to-point has no peer
// (InvalidArgument). What a single-process trainer hands the pipeline
// executor for its one-stage schedule. Any device.
std::unique_ptr<Communicator> MakeSelfCommunicator();

// Argument checks shared by the backends; the message names the call.
absl::Status CheckCommTensor(const char* op, const Tensor& t, Device device);
absl::Status CheckReduceDType(const char* op, const Tensor& t);
absl::Status CheckPeer(const char* op, const Communicator& comm, int peer, int tag);
// full = [size·m, ...] and shard = [m, ...] of one dtype.
absl::Status CheckShardShapes(const char* op, const Tensor& full, const Tensor& shard, int size);

}  // namespace baton
