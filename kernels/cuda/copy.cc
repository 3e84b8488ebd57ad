// Host<->device copies (see copy.h). cudaMemcpyDefault lets unified
// addressing pick the direction; the flags only decide whether to wait.
#include "kernels/cuda/copy.h"

#include "kernels/cuda/check.h"

namespace baton::cuda {

absl::Status CopyBytes(void* dst, bool dst_on_device, const void* src, bool src_on_device,
                       size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  BATON_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  if (!dst_on_device || !src_on_device) BATON_CHECK_CUDA(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

absl::Status ZeroBytes(void* dst, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return absl::OkStatus();
  BATON_CHECK_CUDA(cudaMemsetAsync(dst, 0, bytes, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
