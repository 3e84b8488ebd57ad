// The model's tensor-parallel collectives (runtime/tensor_parallel.h) on
// device tensors, for a model on CUDA. Two paths, chosen once per tp group
// when it is made:
// - NCCL: a NcclCommunicator of the tp group, every call enqueued on the
//   compute stream (no host synchronisation). Needs every rank of the group
//   on its own GPU: NCCL refuses ranks that share a device.
// - Host-staged: device→host copy, the MPI collective of the group's
//   MpiCommunicator (rank-order fold, docs/parallel.md), host→device copy.
//   Synchronises the stream every call; slow, but it is what lets ranks
//   share a GPU (a tp=2 test on a machine with one GPU). bf16/f16 are
//   widened to f32 on the host for the sum, and rounded once at the end.
// Invariant of both: every rank of the group gets the same bits. Create is
// collective over the group; all its ranks reach the same choice.
#pragma once

#ifdef BATON_HAVE_CUDA

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "runtime/tensor_parallel.h"

namespace baton {

enum class TpPath {
  kAuto,        // NCCL when every rank of the group is on a distinct device, else host-staged
  kNccl,        // NCCL or FailedPrecondition
  kHostStaged,  // always through host memory and MPI
};

// Collective over `group`: whether its ranks all run on distinct CUDA
// devices (the calling thread's current device, compared by UUID, so ranks
// on different hosts count as distinct). `devices` (optional) gets the
// number of distinct devices.
absl::StatusOr<bool> GroupOnDistinctDevices(MPI_Comm group, int* devices = nullptr);

class DeviceTpCollectives final : public TpCollectives {
 public:
  // `host` is the tp group's MPI communicator (borrowed, must outlive
  // this); `stream` the compute stream (borrowed). Collective over `host`.
  static absl::StatusOr<std::unique_ptr<DeviceTpCollectives>> Create(MpiCommunicator& host, cudaStream_t stream,
                                                                     TpPath path = TpPath::kAuto);

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  absl::Status AllReduceSum(Tensor& t) override;
  absl::Status AllReduceMax(Tensor& t) override;
  absl::Status AllGather(const Tensor& in, Tensor& out) override;
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override;

  bool uses_nccl() const { return nccl_ != nullptr; }
  // For the launcher's log line: "nccl (2 ranks on 2 devices)" or
  // "host-staged (2 ranks on 1 device: NCCL needs a device per rank)".
  const std::string& description() const { return description_; }

 private:
  DeviceTpCollectives(MpiCommunicator& host, std::unique_ptr<NcclCommunicator> nccl, std::string description)
      : host_(host), nccl_(std::move(nccl)), description_(std::move(description)) {}

  MpiCommunicator& host_;
  std::unique_ptr<NcclCommunicator> nccl_;  // null: host-staged
  std::string description_;
};

}  // namespace baton

#endif  // BATON_HAVE_CUDA
