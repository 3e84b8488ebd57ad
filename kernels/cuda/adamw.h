// Multi-tensor AdamW on the GPU (reference: kernels/cpu/adamw.h): one launch
// updates up to kMaxTensors fp32 parameter tensors (master weights) with
// their fp32 gradients and fp32 moments; longer lists are split into
// several launches. grad_scale multiplies every gradient first (global-norm
// clipping: min(1, max_norm / norm)). Bias correction as in the CPU kernel.
// A tensor may also name a bf16 copy of its weights (the compute weights of
// mixed precision): it is written from the updated fp32 value in the same
// pass, with the same rounding as Convert, so a separate f32 -> bf16 pass
// over all parameters after the step is not needed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace baton::cuda {

struct AdamWTensor {
  float* p;        // (n) master weights, updated
  const float* g;  // (n) gradient
  float* m;        // (n) first moment
  float* v;        // (n) second moment
  int64_t n;
  void* p_bf16 = nullptr;  // optional (n) bf16: set to the updated p, rounded to nearest even
};

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // counts from 1
  float grad_scale = 1.0f;
};

absl::Status AdamWMultiTensor(const AdamWTensor* tensors, int count, const AdamWHyper& hp,
                              cudaStream_t stream);

}  // namespace baton::cuda
