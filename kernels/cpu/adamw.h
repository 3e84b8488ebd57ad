// AdamW on the CPU (Loshchilov & Hutter 2019, decoupled weight decay):
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   p −= lr · ( m/(1−β1^step) / (sqrt(v/(1−β2^step)) + eps) + wd · p )
// step counts from 1. Bias corrections are computed once in double.
// Elementwise, so the result is independent of the thread count.
#pragma once

#include <cstdint>

namespace baton::cpu {

// p, g, m, v: n elements; p, m, v updated in place. The gradient is
// g · grad_scale, rounded to T (the same bits as scaling g first).
template <typename T>
void AdamWStep(T* p, const T* g, T* m, T* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t step, float grad_scale = 1.0f);

}  // namespace baton::cpu
