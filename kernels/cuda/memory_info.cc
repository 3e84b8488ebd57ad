// GPU memory query (see memory_info.h).
#include "kernels/cuda/memory_info.h"

#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"

namespace baton::cuda {

absl::StatusOr<GpuMemory> CurrentGpuMemory() {
  size_t free_bytes = 0, total_bytes = 0;
  BATON_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  return GpuMemory{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

}  // namespace baton::cuda
