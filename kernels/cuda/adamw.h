// Multi-tensor AdamW on the GPU (reference: kernels/cpu/adamw.h): one launch
// updates up to kMaxTensors fp32 parameter tensors (master weights) with
// their fp32 gradients and fp32 moments; longer lists are split into
// several launches. grad_scale multiplies every gradient first (global-norm
// clipping: min(1, max_norm / norm)). Bias correction as in the CPU kernel.
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
};

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // counts from 1
  float grad_scale = 1.0f;
};

absl::Status AdamWMultiTensor(const AdamWTensor* tensors, int count, const AdamWHyper& hp,
                              cudaStream_t stream);

}  // namespace baton::cuda
