// Offline distillation on the CPU: the teacher's distribution kept as its
// top-k logits per token plus the log-sum-exp of the rest, and the loss
// against that. The teacher side is the (k + 1)-outcome distribution
//   p_i = exp(v_i/T − L) for the k kept ids,  p_rest = exp(rest_lse − L),
//   L = log(Σ_i exp(v_i/T) + exp(rest_lse)) (the full teacher's lse at T),
// and the student is coarse-grained the same way (q_i, q_rest = Σ_{j∉K} q_j),
// so KL_offline = KL(p_K ‖ q_K) <= the full KL, with equality at k = V; the
// difference is p_rest·KL(teacher ‖ student within the rest), which shrinks
// as k grows. Gradient: alpha·T·(q_j − p̃_j) + (1 − alpha)·(softmax(s)_j − [j = y]),
// p̃_j = p_i on kept ids, p_rest·q_j/q_rest elsewhere. Rows with a target
// < 0 are ignored. Math in double; statistics stored in T.
#pragma once

#include <cstdint>

#include "kernels/cpu/distill_loss.h"

namespace baton::cpu {

// Per row of logits (n, v): the k largest values (descending; ties to the
// lower id), their ids, and rest_lse = log Σ_{j ∉ top-k} exp(x_j/T)
// (−inf when k = v). values (n, k), indices (n, k), rest_lse (n).
template <typename T>
void TopKLogits(const T* logits, int64_t n, int64_t v, int64_t k, double temperature, T* values, int32_t* indices,
                T* rest_lse);

// The loss in row passes, like distill_loss.h, so that the student's
// logits may be a vocabulary shard [vocab_start, vocab_start + v): a
// vocab-parallel caller reduces max (n) by max, then sums (4 + k, n) by sum
// between the passes. The teacher's top-k (values, indices (n, k),
// rest_lse (n)) is whole on every rank; its ids must be distinct and in
// the vocabulary (the caller checks). Rows of sums: Σexp(s/T − max s/T),
// the same over ids not kept, Σexp(s − max s), s[target], then s at each
// kept id (0 where it is in another shard).
inline constexpr int kOfflineSums = 4;  // rows before the k picked logits
template <typename T>
void OfflineRowMax(const T* student, int64_t n, int64_t v, T* max);
template <typename T>
void OfflineRowSums(const T* student, const int32_t* indices, const int32_t* targets, int64_t vocab_start, int64_t n,
                    int64_t v, int64_t k, double temperature, const T* max, T* sums);
// losses (3, n) as in distill_loss.h (total, KL, CE).
template <typename T>
void OfflineRowLoss(const T* values, const T* rest_lse, const int32_t* targets, int64_t n, int64_t k, const T* max,
                    const T* sums, DistillCoeffs c, T* losses);
// dstudent (n, v) = grad_scale·dloss/dstudent; may alias student.
template <typename T>
void OfflineBackward(const T* student, const T* values, const int32_t* indices, const T* rest_lse,
                     const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v, int64_t k, const T* max,
                     const T* sums, DistillCoeffs c, double grad_scale, T* dstudent);

}  // namespace baton::cpu
