// Softmax cross-entropy fused with its gradient on the GPU (reference:
// kernels/cpu/cross_entropy.h). One block per row: pass 1 keeps an online
// (max, sum of exp) per thread and merges them over the block; pass 2 writes
// dlogits = (softmax − onehot)·grad_scale in the logits' own dtype (it may
// alias logits). No fp32 copy of the logits is ever made. logits (n, v) in
// `t`; targets (n) i32, < 0 ignored (loss 0, gradient 0); losses (n) f32.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status SoftmaxCrossEntropy(Float t, const void* logits, const int32_t* targets, int64_t n,
                                 int64_t v, float* losses, void* dlogits, float grad_scale,
                                 cudaStream_t stream);

}  // namespace baton::cuda
