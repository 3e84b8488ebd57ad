// Fused RMSNorm forward/backward on the GPU (reference: kernels/cpu/rms_norm.h).
// x, y, dy, dx (n, c) and w (c) in `t` (f32 or bf16); rstd (n) always f32;
// dw (c) in `tw` (f32, or bf16 like w), accumulated. One warp per row, fp32
// math. dw is reduced deterministically: fixed chunks of rows into an fp32
// scratch (n_chunks, c), then summed in a fixed order (8 strided partial
// sums per column, added in lane order): the same bits on every run.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status RmsNormForward(Float t, const void* x, const void* w, float eps, int64_t n,
                            int64_t c, void* y, float* rstd, cudaStream_t stream);
// sum (n, c) = a + b (rounded to `t`) and y = RMSNorm(sum): the residual
// add before a norm in one pass (the add kernel + RmsNormForward for
// unaligned or c % 8 != 0 rows). sum may alias a or b.
absl::Status AddRmsNormForward(Float t, const void* a, const void* b, const void* w, float eps, int64_t n,
                               int64_t c, void* sum, void* y, float* rstd, cudaStream_t stream);
// dres (n, c) in `t`, or null: added to dx in the same pass (a residual
// branch's gradient); it may alias dx.
absl::Status RmsNormBackward(Float t, Float tw, const void* dy, const void* x, const void* w,
                             const float* rstd, int64_t n, int64_t c, const void* dres, void* dx,
                             void* dw, cudaStream_t stream);

}  // namespace baton::cuda
