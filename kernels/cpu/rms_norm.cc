// RMSNorm forward/backward reference kernels (see rms_norm.h).
// dx = rstd·(dy∘w) − rstd³/C · x · Σ_j(dy_j w_j x_j);  dw += Σ_rows dy∘x·rstd.
#include "kernels/cpu/rms_norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/lane_sum.h"

namespace baton::cpu {

template <typename T>
void RmsNormForward(const T* x, const T* w, T eps, int64_t n, int64_t c, T* y, T* rstd) {
#pragma omp parallel for schedule(static) if (n * c > 16384)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * c;
    T* yr = y + r * c;
    const T ss = LaneDot(xr, xr, c);
    const T rs = T(1) / std::sqrt(ss / static_cast<T>(c) + eps);
    rstd[r] = rs;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] * rs) * w[j];
  }
}

template <typename T>
void RmsNormBackward(const T* dy, const T* x, const T* w, const T* rstd, int64_t n, int64_t c,
                     const T* dres, T* dx, T* dw) {
#pragma omp parallel for schedule(static) if (n * c > 16384)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * c;
    const T* dyr = dy + r * c;
    T* dxr = dx + r * c;
    const T rs = rstd[r];
    T dot = T(0);
    for (int64_t j = 0; j < c; ++j) dot += dyr[j] * w[j] * xr[j];
    const T coef = rs * rs * rs * dot / static_cast<T>(c);
    if (dres == nullptr) {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) dxr[j] = rs * dyr[j] * w[j] - coef * xr[j];
    } else {  // the same rounding as a separate add: (norm grad) then + dres
      const T* rr = dres + r * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const T g = rs * dyr[j] * w[j] - coef * xr[j];
        dxr[j] = g + rr[j];
      }
    }
  }
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (c + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n * c > 16384)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(c, c0 + kBlock);
    T acc[kBlock];
    for (int64_t j = c0; j < c1; ++j) acc[j - c0] = T(0);
    for (int64_t r = 0; r < n; ++r) {
      const T* xr = x + r * c;
      const T* dyr = dy + r * c;
      const T rs = rstd[r];
#pragma omp simd
      for (int64_t j = c0; j < c1; ++j) acc[j - c0] += dyr[j] * (xr[j] * rs);
    }
    for (int64_t j = c0; j < c1; ++j) dw[j] += acc[j - c0];
  }
}

template void RmsNormForward<float>(const float*, const float*, float, int64_t, int64_t, float*,
                                    float*);
template void RmsNormForward<double>(const double*, const double*, double, int64_t, int64_t,
                                     double*, double*);
template void RmsNormBackward<float>(const float*, const float*, const float*, const float*,
                                     int64_t, int64_t, const float*, float*, float*);
template void RmsNormBackward<double>(const double*, const double*, const double*, const double*,
                                      int64_t, int64_t, const double*, double*, double*);

}  // namespace baton::cpu
