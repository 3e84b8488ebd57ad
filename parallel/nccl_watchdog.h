// A deadline on waits for NCCL work. NCCL kernels that wait for a dead or
// stopped peer never finish, and cudaStreamSynchronize / cudaEventSynchronize
// then block the host forever (the GPU twin of the MPI_Wait hang that
// parallel/peer_watch removes). Here a wait polls its completion
// (cudaEventQuery / cudaStreamQuery) and ncclCommGetAsyncError; when NCCL
// reports an asynchronous error, or nothing completes within the deadline
// (parallel.timeout_s, through PeerTimeoutSeconds()), the communicator is
// aborted with ncclCommAbort, which ends its enqueued kernels so the stream
// and the buffers can be released, and the wait fails with one line naming
// the communicator, the operation and the deadline. The launcher then ends
// the job (MPI_Abort), as for MPI timeouts. Compiled only with
// BATON_HAVE_CUDA. Invariant: with no deadline (0) and no async error a
// wait behaves as the blocking synchronize did.
#pragma once

#ifdef BATON_HAVE_CUDA

#include <cuda_runtime.h>
#include <nccl.h>

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace baton {

// One NCCL communicator as its waits see it: shared by NcclCommunicator and
// its requests, so a request waited on after an abort fails at once.
struct NcclWatch {
  ncclComm_t comm = nullptr;
  std::string name;      // "dp", "tp", ... for messages
  bool aborted = false;  // ncclCommAbort ran: the comm must not be destroyed or used
};

// Polls `query` (cudaErrorNotReady: still running) until it reports done.
// DeadlineExceeded after `timeout_s` (> 0; 0 = no deadline), Unavailable on
// an asynchronous NCCL error; both abort the communicator first. `what`
// names the operation ("all_reduce_sum wait", "synchronize").
absl::Status NcclWatchedWait(NcclWatch& watch, const std::function<cudaError_t()>& query, double timeout_s,
                             const std::string& what);

}  // namespace baton

#endif  // BATON_HAVE_CUDA
