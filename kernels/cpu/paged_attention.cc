// Paged attention reference kernels (see paged_attention.h). Threads own
// (row, head) pairs; each computes its scores, softmax and weighted sum
// alone, in a fixed order, so the result is independent of the thread count
// and of the other rows of the call.
#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace baton::cpu {

template <typename T>
void PagedAttentionForward(const T* q, const T* k_pool, const T* v_pool, const PagedRows& r, int64_t h,
                           int64_t kv, int64_t d, T* out) {
  const int64_t group = h / kv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t token_stride = kv * d;  // elements between consecutive positions in a block
  int64_t work = 0;  // multiply-adds: threads only pay off on a few tens of thousands
  for (int64_t row = 0; row < r.rows; ++row) work += (int64_t{r.row_pos[row]} + 1) * h * d;
#pragma omp parallel if (work > (int64_t{1} << 16))
  {
    std::vector<T> s;  // scores of one (row, head) over its positions
#pragma omp for schedule(dynamic, 1)
    for (int64_t rh = 0; rh < r.rows * h; ++rh) {
      const int64_t row = rh / h, hh = rh % h, kh = hh / group;
      const int32_t* table = r.block_tables + r.row_seq[row] * r.max_blocks;
      const int64_t len = int64_t{r.row_pos[row]} + 1;
      const T* qr = q + (row * h + hh) * d;
      s.resize(static_cast<size_t>(len));
      T max = -INFINITY;
      for (int64_t t = 0; t < len; ++t) {
        const T* kt = k_pool + ((int64_t{table[t / r.block_size]} * r.block_size + t % r.block_size) * kv + kh) * d;
        T acc = 0;
        for (int64_t c = 0; c < d; ++c) acc += qr[c] * kt[c];
        s[t] = acc * scale;
        max = std::max(max, s[t]);
      }
      T sum = 0;
      for (int64_t t = 0; t < len; ++t) {
        s[t] = std::exp(s[t] - max);
        sum += s[t];
      }
      T* o = out + (row * h + hh) * d;
      std::fill(o, o + d, T{0});
      const T inv = T{1} / sum;
      for (int64_t t = 0; t < len; ++t) {
        const T* vt = v_pool + (int64_t{table[t / r.block_size]} * r.block_size + t % r.block_size) * token_stride + kh * d;
        const T p = s[t] * inv;
        for (int64_t c = 0; c < d; ++c) o[c] += p * vt[c];
      }
    }
  }
}

template <typename T>
void PagedKvWrite(const T* k_new, const T* v_new, const PagedRows& r, int64_t kv, int64_t d, T* k_pool,
                  T* v_pool) {
  const int64_t n = kv * d;
  for (int64_t row = 0; row < r.rows; ++row) {
    const int32_t* table = r.block_tables + r.row_seq[row] * r.max_blocks;
    const int64_t t = r.row_pos[row];
    const int64_t at = (int64_t{table[t / r.block_size]} * r.block_size + t % r.block_size) * n;
    std::copy(k_new + row * n, k_new + (row + 1) * n, k_pool + at);
    std::copy(v_new + row * n, v_new + (row + 1) * n, v_pool + at);
  }
}

template <typename T>
void RopeAtPositions(T* x, const int32_t* pos, int64_t rows, int64_t h, int64_t d, const RopeParams& p) {
  const int64_t half = d / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = RopeInverseFrequency(p, i, d);
#pragma omp parallel for schedule(static) if (rows * h * d > 16384)
  for (int64_t row = 0; row < rows; ++row) {
    std::vector<T> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos[row]) * inv_freq[i];
      c[i] = static_cast<T>(std::cos(angle));
      s[i] = static_cast<T>(std::sin(angle));
    }
    for (int64_t hh = 0; hh < h; ++hh) {
      T* x1 = x + (row * h + hh) * d;
      T* x2 = x1 + half;
      for (int64_t i = 0; i < half; ++i) {
        const T a = x1[i], b = x2[i];
        x1[i] = a * c[i] - b * s[i];
        x2[i] = b * c[i] + a * s[i];
      }
    }
  }
}

#define BATON_PAGED_INSTANTIATE(T)                                                                          \
  template void PagedAttentionForward<T>(const T*, const T*, const T*, const PagedRows&, int64_t, int64_t, \
                                         int64_t, T*);                                                      \
  template void PagedKvWrite<T>(const T*, const T*, const PagedRows&, int64_t, int64_t, T*, T*);           \
  template void RopeAtPositions<T>(T*, const int32_t*, int64_t, int64_t, int64_t, const RopeParams&);
BATON_PAGED_INSTANTIATE(float)
BATON_PAGED_INSTANTIATE(double)
#undef BATON_PAGED_INSTANTIATE

}  // namespace baton::cpu
