// Is there a usable GPU? The one question every layer may ask without
// depending on CUDA headers. Built without CUDA, the answer is always 0.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace baton {

// Number of CUDA devices this process can use; 0 when the build has no
// CUDA, the driver is missing, or no device is visible (any CUDA error
// counts as "no GPU": cudaGetDeviceCount returns 35 without a driver).
int CudaDeviceCount();
// One line for logs: "2 x NVIDIA H100 80GB HBM3" or why there is none.
std::string CudaDeviceSummary();
// Makes `ordinal` the current device of the calling thread (cudaSetDevice);
// FailedPrecondition without CUDA or when the ordinal does not exist.
absl::Status SelectCudaDevice(int ordinal);

}  // namespace baton
