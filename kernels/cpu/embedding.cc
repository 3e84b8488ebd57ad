// Embedding reference kernels (see embedding.h).
#include "kernels/cpu/embedding.h"

#include <algorithm>

namespace baton::cpu {

template <typename T>
void EmbeddingForward(const int32_t* tokens, const T* table, int64_t vocab_start, int64_t v_local,
                      int64_t n, int64_t c, T* out) {
#pragma omp parallel for schedule(static) if (n * c > 32768)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t row = static_cast<int64_t>(tokens[r]) - vocab_start;
    T* o = out + r * c;
    if (row >= 0 && row < v_local) {
      std::copy(table + row * c, table + (row + 1) * c, o);
    } else {
      std::fill(o, o + c, T(0));
    }
  }
}

template <typename T>
void EmbeddingBackward(const T* dout, const int32_t* tokens, int64_t vocab_start, int64_t v_local,
                       int64_t n, int64_t c, T* dtable) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (c + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n * c > 32768)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(c, c0 + kBlock);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t row = static_cast<int64_t>(tokens[r]) - vocab_start;
      if (row < 0 || row >= v_local) continue;
      const T* d = dout + r * c;
      T* t = dtable + row * c;
#pragma omp simd
      for (int64_t j = c0; j < c1; ++j) t[j] += d[j];
    }
  }
}

template void EmbeddingForward<float>(const int32_t*, const float*, int64_t, int64_t, int64_t,
                                      int64_t, float*);
template void EmbeddingForward<double>(const int32_t*, const double*, int64_t, int64_t, int64_t,
                                       int64_t, double*);
template void EmbeddingBackward<float>(const float*, const int32_t*, int64_t, int64_t, int64_t,
                                       int64_t, float*);
template void EmbeddingBackward<double>(const double*, const int32_t*, int64_t, int64_t, int64_t,
                                        int64_t, double*);

}  // namespace baton::cpu
