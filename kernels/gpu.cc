// CUDA device discovery (see gpu.h). With CUDA the real query is in
// kernels/cuda/device.cu; without, these stubs answer "none".
#include "kernels/gpu.h"

#ifndef BATON_HAVE_CUDA
namespace baton {
int CudaDeviceCount() { return 0; }
std::string CudaDeviceSummary() { return "built without CUDA"; }
absl::Status SelectCudaDevice(int) { return absl::FailedPreconditionError("baton was built without CUDA"); }
}  // namespace baton
#endif
