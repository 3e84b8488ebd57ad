// Softmax cross-entropy fused with its gradient (llm.c style) on the CPU.
// Per row: lse = max + log Σ exp(l − max) (max-subtracted, stable),
// loss = lse − l[target]; gradient (softmax − onehot) · grad_scale written
// in the same pass, optionally over the logits themselves. Rows whose
// target is negative are ignored: loss 0 and gradient 0.
#pragma once

#include <cstdint>

namespace baton::cpu {

// logits (n, v); targets (n); losses (n); dlogits (n, v) or null, may alias logits.
template <typename T>
void SoftmaxCrossEntropy(const T* logits, const int32_t* targets, int64_t n, int64_t v, T* losses,
                         T* dlogits, T grad_scale);

}  // namespace baton::cpu
