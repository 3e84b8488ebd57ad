// CUDA device discovery through the runtime API (never the driver API:
// libcuda is absent on GPU-less machines and the binary must still start).
#include <cuda_runtime.h>

#include <string>

#include "kernels/gpu.h"

namespace baton {

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string CudaDeviceSummary() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no GPU (") + cudaGetErrorString(e) + ")";
  }
  if (n == 0) return "no GPU";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return std::to_string(n) + " x unknown GPU";
  return std::to_string(n) + " x " + prop.name;
}

absl::Status SelectCudaDevice(int ordinal) {
  cudaError_t e = cudaSetDevice(ordinal);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(std::string("cudaSetDevice(") + std::to_string(ordinal) +
                                         "): " + cudaGetErrorString(e));
  }
  return absl::OkStatus();
}

}  // namespace baton
