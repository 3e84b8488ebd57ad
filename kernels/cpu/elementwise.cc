// Elementwise and reduction reference kernels (see elementwise.h).
#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <vector>

namespace baton::cpu {
namespace {

constexpr int64_t kParallelMin = 32768;
constexpr int64_t kChunk = 4096;

// Σ f(x[i]) in double: per-chunk partials, then an in-order sum of partials.
template <typename T, typename F>
double ChunkedSum(const T* x, int64_t n, F f) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) acc += f(static_cast<double>(x[i]));
    return acc;
  }
  std::vector<double> partial(chunks);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
    double acc = 0.0;
    for (int64_t i = i0; i < i1; ++i) acc += f(static_cast<double>(x[i]));
    partial[c] = acc;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

template <typename T>
void Add(const T* a, const T* b, int64_t n, T* out) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void AddInPlace(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

template <typename T>
void Scale(T* x, int64_t n, T s) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

template <typename T>
double SumSquares(const T* x, int64_t n) {
  return ChunkedSum(x, n, [](double v) { return v * v; });
}

template <typename T>
double Sum(const T* x, int64_t n) {
  return ChunkedSum(x, n, [](double v) { return v; });
}

#define BATON_INSTANTIATE(T)                                   \
  template void Add<T>(const T*, const T*, int64_t, T*);       \
  template void AddInPlace<T>(T*, const T*, int64_t);          \
  template void Scale<T>(T*, int64_t, T);                      \
  template double SumSquares<T>(const T*, int64_t);            \
  template double Sum<T>(const T*, int64_t);
BATON_INSTANTIATE(float)
BATON_INSTANTIATE(double)
#undef BATON_INSTANTIATE

}  // namespace baton::cpu
