// Rotary position embedding on the GPU, HF rotate_half layout (reference:
// kernels/cpu/rope.h): for head dim d, element i pairs with i + d/2,
// angle = t · theta^(-2i/d). x (b, t, h, d) rotated in place; inverse
// rotates by -angle (the backward). Angles and sin/cos in double, like the
// CPU table, so long sequences keep fp32 accuracy.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status RopeRotate(Float t, void* x, int64_t b, int64_t seq, int64_t h, int64_t d,
                        double theta, bool inverse, cudaStream_t stream);

}  // namespace baton::cuda
