// The CPU reference of the vocab-parallel cross-entropy pieces (contract in
// runtime/ops.h: RowMax, RowSumExp, PickTargets, VocabParallelCrossEntropy;
// CUDA twin: kernels/cuda/vocab_parallel_ce.h). logits (n, v) hold the
// vocabulary ids [vocab_start, vocab_start + v) of each row; per-row
// statistics are of the logits' dtype. Rows are independent, so threads
// split rows and the bits do not depend on the thread count.
#pragma once

#include <cstdint>

namespace baton::cpu {

template <typename T>
void RowMax(const T* logits, int64_t n, int64_t v, T* max);
template <typename T>
void RowSumExp(const T* logits, const T* max, int64_t n, int64_t v, T* sum);
template <typename T>
void PickTargets(const T* logits, const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v,
                 T* target_logit);
// dlogits may be null or alias logits.
template <typename T>
void VocabParallelCrossEntropy(const T* logits, const int32_t* targets, int64_t vocab_start, const T* max,
                               const T* sum, const T* target_logit, int64_t n, int64_t v, T* losses, T* dlogits,
                               float grad_scale);

}  // namespace baton::cpu
