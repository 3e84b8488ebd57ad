// The NCCL wait deadline (see nccl_watchdog.h).
#ifdef BATON_HAVE_CUDA

#include "parallel/nccl_watchdog.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;

void Abort(NcclWatch& watch) {
  if (watch.aborted) return;
  watch.aborted = true;
  ncclCommAbort(watch.comm);  // ends the comm's kernels; its resources are freed here
}

}  // namespace

absl::Status NcclWatchedWait(NcclWatch& watch, const std::function<cudaError_t()>& query, double timeout_s,
                             const std::string& what) {
  if (watch.aborted) {
    return absl::UnavailableError(absl::StrCat("nccl ", watch.name, " ", what, ": the communicator was aborted"));
  }
  const Clock::time_point start = Clock::now();
  std::chrono::microseconds nap(20);
  Clock::time_point next_error_check = start;
  while (true) {
    const cudaError_t e = query();
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) {
      return absl::InternalError(absl::StrCat("nccl ", watch.name, " ", what, ": ", cudaGetErrorName(e), ": ",
                                              cudaGetErrorString(e)));
    }
    const Clock::time_point now = Clock::now();
    if (now >= next_error_check) {  // the async error query takes a lock inside NCCL: not every spin
      next_error_check = now + std::chrono::milliseconds(10);
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(watch.comm, &async);
      if (r != ncclSuccess || async != ncclSuccess) {
        const ncclResult_t bad = r != ncclSuccess ? r : async;
        Abort(watch);
        return absl::UnavailableError(absl::StrCat("nccl ", watch.name, " ", what, ": ", ncclGetErrorString(bad),
                                                   " (NCCL ", static_cast<int>(bad),
                                                   "); communicator aborted (a peer failed or left)"));
      }
    }
    const double waited = std::chrono::duration<double>(now - start).count();
    if (timeout_s > 0 && waited > timeout_s) {
      Abort(watch);
      return absl::DeadlineExceededError(absl::StrFormat(
          "nccl %s %s: no progress in %.0f s (parallel.timeout_s); a peer of this group is dead or stopped; "
          "communicator aborted",
          watch.name, what, timeout_s));
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
}

}  // namespace baton

#endif  // BATON_HAVE_CUDA
