// SwiGLU on the GPU (reference: kernels/cpu/swiglu.h): h = silu(gate)·up,
// elementwise over n values of `t`; backward writes dgate and dup (which
// may alias gate and up: each element is read before it is written).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status SwiGluForward(Float t, const void* gate, const void* up, int64_t n, void* h,
                           cudaStream_t stream);
absl::Status SwiGluBackward(Float t, const void* dh, const void* gate, const void* up, int64_t n,
                            void* dgate, void* dup, cudaStream_t stream);

}  // namespace baton::cuda
