// SwiGLU reference kernels (see swiglu.h).
// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))).
#include "kernels/cpu/swiglu.h"

#include <cmath>

#include "kernels/cpu/fast_exp.h"

namespace baton::cpu {

template <typename T>
void SwiGluForward(const T* gate, const T* up, int64_t n, T* h) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T sig = T(1) / (T(1) + Exp(-g));
    h[i] = g * sig * up[i];
  }
}

template <typename T>
void SwiGluBackward(const T* dh, const T* gate, const T* up, int64_t n, T* dgate, T* dup) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T sig = T(1) / (T(1) + Exp(-g));
    const T silu = g * sig;
    const T d = dh[i];
    const T u = up[i];  // read before writing: dup may alias up in callers that reuse buffers
    dup[i] = d * silu;
    dgate[i] = d * u * sig * (T(1) + g * (T(1) - sig));
  }
}

template void SwiGluForward<float>(const float*, const float*, int64_t, float*);
template void SwiGluForward<double>(const double*, const double*, int64_t, double*);
template void SwiGluBackward<float>(const float*, const float*, const float*, int64_t, float*,
                                    float*);
template void SwiGluBackward<double>(const double*, const double*, const double*, int64_t,
                                     double*, double*);

}  // namespace baton::cpu
