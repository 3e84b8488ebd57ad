// Offline distillation on the CPU: the teacher's distribution kept as its
// top-k logits per token plus the log-sum-exp of the rest, and the loss
// against that. The teacher side is the (k + 1)-outcome distribution
//   p_i = exp(v_i/T − L) for the k kept ids,  p_rest = exp(rest_lse − L),
//   L = log(Σ_i exp(v_i/T) + exp(rest_lse)) (the full teacher's lse at T),
// and the student is coarse-grained the same way (q_i, q_rest = Σ_{j∉K} q_j),
// so KL_offline = KL(p_K ‖ q_K) <= the full KL, with equality at k = V; the
// difference is p_rest·KL(teacher ‖ student within the rest), which shrinks
// as k grows. Gradient: alpha·T·(q_j − p̃_j) + (1 − alpha)·(softmax(s)_j − [j = y]),
// p̃_j = p_i on kept ids, p_rest·q_j/q_rest elsewhere. Whole rows only (no
// tensor parallelism yet). Rows with a target < 0 are ignored. Math in double.
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

// losses (3, n) as in distill_loss.h (total, KL, CE); dstudent (n, v) =
// grad_scale·dloss/dstudent or null, may alias student. Returns the first
// row whose indices are out of [0, v) or repeated, or −1 when all are valid
// (such rows are left unwritten).
template <typename T>
int64_t OfflineDistillRows(const T* student, const T* values, const int32_t* indices, const T* rest_lse,
                           const int32_t* targets, int64_t n, int64_t v, int64_t k, DistillCoeffs c,
                           double grad_scale, T* losses, T* dstudent);

}  // namespace baton::cpu
