// The vocab-parallel softmax cross-entropy pieces on the GPU (reference:
// the CPU kernels in runtime/ops_vocab_parallel.cc; contract in
// runtime/ops.h). Tensor parallelism splits the lm head over the
// vocabulary, so each rank holds logits (n, v_local) for the ids
// [vocab_start, vocab_start + v_local); the model reduces the per-row
// statistics over tp between these calls. Logits are f32 or bf16 (`t`),
// read in place and never copied to fp32; every statistic is f32 (n).
// Targets (n) i32; a target < 0 is ignored (loss 0, gradient 0).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

// max[r] = max_j logits[r, j].
absl::Status RowMax(Float t, const void* logits, int64_t n, int64_t v, float* max, cudaStream_t stream);
// sum[r] = Σ_j exp(logits[r, j] − max[r]).
absl::Status RowSumExp(Float t, const void* logits, const float* max, int64_t n, int64_t v, float* sum,
                       cudaStream_t stream);
// target_logit[r] = logits[r, targets[r] − vocab_start] when that id is in
// this shard (and the target is not ignored), else 0.
absl::Status PickTargets(Float t, const void* logits, const int32_t* targets, int64_t vocab_start, int64_t n,
                         int64_t v, float* target_logit, cudaStream_t stream);
// losses[r] = log(sum[r]) + max[r] − target_logit[r] (0 on ignored rows);
// dlogits (n, v) in `t` = (exp(x − max)/sum − onehot)·grad_scale, 0 on
// ignored rows; may alias logits; null to skip.
absl::Status VocabParallelCrossEntropy(Float t, const void* logits, const int32_t* targets, int64_t vocab_start,
                                       const float* max, const float* sum, const float* target_logit, int64_t n,
                                       int64_t v, float* losses, void* dlogits, float grad_scale,
                                       cudaStream_t stream);

}  // namespace baton::cuda
