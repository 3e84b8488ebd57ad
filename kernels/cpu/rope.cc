// Rotary embedding reference kernel (see rope.h). One cos/sin table of
// (t, d/2) per call, from the d/2 inverse frequencies, then a pure
// elementwise pass threaded over (b, t).
#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "kernels/check.h"

namespace baton {

const char* RopeScalingName(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::kNone: return "none";
    case RopeScaling::Type::kLinear: return "linear";
    case RopeScaling::Type::kLlama3: return "llama3";
  }
  return "?";
}

}  // namespace baton

namespace baton::cpu {

template <typename T>
void RopeRotate(T* x, int64_t b, int64_t t, int64_t h, int64_t d, const RopeParams& params, bool inverse) {
  BATON_CHECK_MSG(d % 2 == 0, "rope: head dim must be even");
  const int64_t half = d / 2;
  std::vector<T> cos_t(t * half), sin_t(t * half);  // (t, d/2)
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = RopeInverseFrequency(params, i, d);
    for (int64_t p = 0; p < t; ++p) {
      const double angle = static_cast<double>(p) * inv_freq;
      cos_t[p * half + i] = static_cast<T>(std::cos(angle));
      sin_t[p * half + i] = static_cast<T>(inverse ? -std::sin(angle) : std::sin(angle));
    }
  }
  const T* cs = cos_t.data();
  const T* sn = sin_t.data();
#pragma omp parallel for schedule(static) if (b * t * h * d > 16384)
  for (int64_t bt = 0; bt < b * t; ++bt) {
    const int64_t p = bt % t;
    const T* c = cs + p * half;
    const T* s = sn + p * half;
    for (int64_t hh = 0; hh < h; ++hh) {
      T* x1 = x + (bt * h + hh) * d;
      T* x2 = x1 + half;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const T a = x1[i], bb = x2[i];
        x1[i] = a * c[i] - bb * s[i];
        x2[i] = bb * c[i] + a * s[i];
      }
    }
  }
}

template void RopeRotate<float>(float*, int64_t, int64_t, int64_t, int64_t, const RopeParams&, bool);
template void RopeRotate<double>(double*, int64_t, int64_t, int64_t, int64_t, const RopeParams&, bool);

}  // namespace baton::cpu
