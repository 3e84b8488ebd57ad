// AdamW reference kernel (see adamw.h).
#include "kernels/cpu/adamw.h"

#include <cmath>

#include "kernels/check.h"

namespace baton::cpu {

template <typename T>
void AdamWStep(T* p, const T* g, T* m, T* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t step, float grad_scale) {
  BATON_CHECK_MSG(step >= 1, "AdamW step counts from 1");
  const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
  const T one_m_b1 = static_cast<T>(1.0 - beta1), one_m_b2 = static_cast<T>(1.0 - beta2);
  const T inv_bc1 = static_cast<T>(1.0 / (1.0 - std::pow(beta1, static_cast<double>(step))));
  const T inv_bc2 = static_cast<T>(1.0 / (1.0 - std::pow(beta2, static_cast<double>(step))));
  const T lr_t = static_cast<T>(lr), eps_t = static_cast<T>(eps);
  const T wd = static_cast<T>(weight_decay);
  const T gs = static_cast<T>(grad_scale);
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] * gs;
    const T mi = b1 * m[i] + one_m_b1 * gi;
    const T vi = b2 * v[i] + one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const T m_hat = mi * inv_bc1;
    const T v_hat = vi * inv_bc2;
    p[i] -= lr_t * (m_hat / (std::sqrt(v_hat) + eps_t) + wd * p[i]);
  }
}

template void AdamWStep<float>(float*, const float*, float*, float*, int64_t, double, double,
                               double, double, double, int64_t, float);
template void AdamWStep<double>(double*, const double*, double*, double*, int64_t, double, double,
                                double, double, double, int64_t, float);

}  // namespace baton::cpu
