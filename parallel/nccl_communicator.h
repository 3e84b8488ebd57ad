// The NCCL backend of Communicator: device buffers (Tensor on kCuda), one
// ncclComm_t per group, every operation enqueued on one CUDA stream.
// Compiled only in CUDA builds (BATON_HAVE_CUDA); the CUDA issue runs it.
//
// Semantics differ from the MPI backend in two ways the callers must know:
// - Calls are asynchronous to the host: they return once enqueued, and
//   work later on the same stream sees the result. Synchronize() (or a
//   request's Wait()) blocks the host. Barrier() synchronizes.
// - NCCL trusts sizes: a receive of the wrong size is not detected (the
//   MPI/UCX backends report it). Reductions give the same bits on every
//   rank (NCCL's ring/tree broadcasts one result), not the MPI fold's bits.
// Point-to-point: a send waits on the device for the peer's matching
// receive, so two ranks that exchange must post both inside
// GroupStart()/GroupEnd() (ncclGroupStart/End), or they deadlock. Inside a
// group NCCL enqueues nothing until GroupEnd, so the requests made there
// become waitable only after GroupEnd (their completion events are
// recorded then; Wait before GroupEnd is FailedPrecondition).
#pragma once

#ifdef BATON_HAVE_CUDA

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"  // <mpi.h> without the C++ bindings
#include "parallel/nccl_watchdog.h"

namespace baton {

struct NcclEvent;  // a request's completion event (nccl_communicator.cc)

// NCCL and CUDA codes as Status (error string, the call, file:line).
absl::Status FromNccl(ncclResult_t result, const char* expr, const char* file, int line);
absl::Status FromCudaInNccl(cudaError_t error, const char* expr, const char* file, int line);

#define BATON_CHECK_NCCL(x) BATON_RETURN_IF_ERROR(::baton::FromNccl((x), #x, __FILE__, __LINE__))

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `group` (the MPI communicator of the same ranks, e.g.
  // MpiCommunicator::comm()): group rank 0 makes the unique id, MPI_Bcast
  // hands it round, ncclCommInitRank joins. Uses the calling thread's
  // current CUDA device; `stream` is borrowed and must outlive this.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(MPI_Comm group, cudaStream_t stream,
                                                                  std::string name);
  ~NcclCommunicator() override;  // ncclCommDestroy

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  cudaStream_t stream() const { return stream_; }
  ncclComm_t comm() const { return comm_; }

  // Reductions: f32, f64, i32, bf16, f16 (NCCL sums bf16 natively).
  absl::Status AllReduceSum(Tensor& t) override;
  // Elementwise max over the group, in place (not in Communicator: only
  // the vocab-parallel softmax needs it, see parallel/device_tp_collectives.h).
  absl::Status AllReduceMax(Tensor& t);
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override;
  absl::Status AllGather(const Tensor& in, Tensor& out) override;
  absl::Status Broadcast(Tensor& t, int root) override;
  absl::Status Barrier() override;  // a 1-element all-reduce, then Synchronize()
  absl::StatusOr<CommRequestPtr> ISend(const Tensor& t, int peer, int tag) override;
  absl::StatusOr<CommRequestPtr> IRecv(Tensor& t, int peer, int tag) override;

  // Batches point-to-point calls between them into one NCCL group.
  absl::Status GroupStart();
  absl::Status GroupEnd();
  // The stream's work done; with a deadline (PeerTimeoutSeconds(), from
  // parallel.timeout_s) the communicator is aborted when it is not done in
  // time (parallel/nccl_watchdog.h). Requests' Wait() alike.
  absl::Status Synchronize();

 private:
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, int rank, int size, std::string name);
  absl::Status Context(absl::Status st, const char* op) const;
  absl::Status Usable(const char* op) const;  // Unavailable once the watchdog aborted the comm
  // The request of a send/receive just posted: its event is recorded now,
  // or at the outermost GroupEnd when inside a group.
  absl::StatusOr<CommRequestPtr> MakeRequest(const Tensor& t);

  ncclComm_t comm_;
  cudaStream_t stream_;
  int rank_, size_;
  std::string name_;
  std::shared_ptr<NcclWatch> watch_;  // comm_ and whether it was aborted, shared with the requests
  int32_t* barrier_dev_ = nullptr;  // i32[1] on the device, made on first Barrier()
  int group_depth_ = 0;              // GroupStart minus GroupEnd calls
  // Events of requests posted inside the open group (shared with the requests).
  std::vector<std::shared_ptr<NcclEvent>> group_events_;
};

}  // namespace baton

#endif  // BATON_HAVE_CUDA
