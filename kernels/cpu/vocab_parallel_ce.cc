// Vocab-parallel cross-entropy reference kernels (see vocab_parallel_ce.h).
#include "kernels/cpu/vocab_parallel_ce.h"

#include <algorithm>
#include <cmath>

namespace baton::cpu {

template <typename T>
void RowMax(const T* p, int64_t n, int64_t v, T* o) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    T m = -INFINITY;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, p[r * v + j]);
    o[r] = m;
  }
}

template <typename T>
void RowSumExp(const T* p, const T* m, int64_t n, int64_t v, T* o) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(static_cast<double>(p[r * v + j]) - m[r]);
    o[r] = static_cast<T>(s);
  }
}

template <typename T>
void PickTargets(const T* p, const int32_t* t, int64_t start, int64_t n, int64_t v, T* o) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t j = static_cast<int64_t>(t[r]) - start;
    o[r] = t[r] >= 0 && j >= 0 && j < v ? p[r * v + j] : T(0);
  }
}

template <typename T>
void VocabParallelCrossEntropy(const T* p, const int32_t* t, int64_t start, const T* m, const T* s, const T* tl,
                               int64_t n, int64_t v, T* l, T* d, float scale) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    if (t[r] < 0) {
      l[r] = 0;
      if (d != nullptr) {
        for (int64_t j = 0; j < v; ++j) d[r * v + j] = 0;
      }
      continue;
    }
    const double log_sum = std::log(static_cast<double>(s[r]));
    l[r] = static_cast<T>(log_sum + m[r] - tl[r]);
    if (d == nullptr) continue;
    const double inv = 1.0 / static_cast<double>(s[r]);
    const int64_t hit = static_cast<int64_t>(t[r]) - start;
    for (int64_t j = 0; j < v; ++j) {
      const double prob = std::exp(static_cast<double>(p[r * v + j]) - m[r]) * inv;
      d[r * v + j] = static_cast<T>((prob - (j == hit ? 1.0 : 0.0)) * scale);
    }
  }
}

#define BATON_INSTANTIATE(T)                                                                          \
  template void RowMax<T>(const T*, int64_t, int64_t, T*);                                            \
  template void RowSumExp<T>(const T*, const T*, int64_t, int64_t, T*);                               \
  template void PickTargets<T>(const T*, const int32_t*, int64_t, int64_t, int64_t, T*);              \
  template void VocabParallelCrossEntropy<T>(const T*, const int32_t*, int64_t, const T*, const T*,   \
                                             const T*, int64_t, int64_t, T*, T*, float);
BATON_INSTANTIATE(float)
BATON_INSTANTIATE(double)
#undef BATON_INSTANTIATE

}  // namespace baton::cpu
