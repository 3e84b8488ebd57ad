// Causal grouped-query attention on the CPU, the naive exact algorithm
// (scores row by row, max-subtracted softmax), scale 1/sqrt(d). Query head
// hh reads kv head hh / (h / kv). The forward saves lse (log-sum-exp of the
// scaled scores per query row) and optionally the probabilities; every
// probability, stored or recomputed in the backward, comes from one
// non-inlined routine p = exp(s − lse), so both paths give the same bits.
// Threads own (batch, head) in the forward and (batch, kv head) in the
// backward, so dk/dv sums over the query heads of a group run in a fixed
// order and the result does not depend on the thread count.
#pragma once

#include <cstdint>

namespace baton::cpu {

// q (b, t, h, d); k, v (b, t, kv, d); out (b, t, h, d); lse (b, h, t);
// probs (b, h, t, t) or null (masked entries written as 0).
template <typename T>
void AttentionForward(const T* q, const T* k, const T* v, int64_t b, int64_t t, int64_t h,
                      int64_t kv, int64_t d, T* out, T* lse, T* probs);

// dq (b, t, h, d), dk, dv (b, t, kv, d) overwritten. probs may be null:
// then recomputed from q, k and lse.
template <typename T>
void AttentionBackward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                       const T* lse, const T* probs, int64_t b, int64_t t, int64_t h, int64_t kv,
                       int64_t d, T* dq, T* dk, T* dv);

}  // namespace baton::cpu
