// Byte copies and fills for Tensor (runtime/tensor.cc) across host and
// device. Copies touching host memory synchronise the stream before they
// return, so the host may read or reuse its buffer at once; device-to-device
// copies and fills stay asynchronous on the stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"

namespace baton::cuda {

absl::Status CopyBytes(void* dst, bool dst_on_device, const void* src, bool src_on_device,
                       size_t bytes, cudaStream_t stream);
absl::Status ZeroBytes(void* dst, size_t bytes, cudaStream_t stream);

}  // namespace baton::cuda
