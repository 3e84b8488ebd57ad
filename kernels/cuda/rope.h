// Rotary position embedding on the GPU, HF rotate_half layout (reference:
// kernels/cpu/rope.h): for head dim d, element i pairs with i + d/2,
// angle = t · RopeInverseFrequency(p, i, d) (theta^(-2i/d), rescaled per
// p.scaling: none, linear or llama3 — the same host+device function the CPU
// reference uses). x (b, t, h, d) rotated in place; inverse rotates by
// -angle (the backward). Frequencies, angles and sin/cos in double, like
// the CPU table, so long sequences keep fp32 accuracy.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status RopeRotate(Float t, void* x, int64_t b, int64_t seq, int64_t h, int64_t d,
                        const RopeParams& p, bool inverse, cudaStream_t stream);

}  // namespace baton::cuda
