// OpenBLAS-backed GEMM and the linear-layer bias helpers (see gemm.h).
#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>

#include "kernels/check.h"

namespace baton::cpu {
namespace {

void BlasGemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
              const float* a, blasint lda, const float* b, blasint ldb, float beta, float* c,
              blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void BlasGemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha,
              const double* a, blasint lda, const double* b, blasint ldb, double beta, double* c,
              blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

template <typename T>
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS would still scale c by beta; do it explicitly.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  BATON_CHECK_MSG(m < (int64_t{1} << 31) && n < (int64_t{1} << 31) && k < (int64_t{1} << 31),
                  "GEMM dimension exceeds the BLAS integer range");
  BlasGemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
           static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
           static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
           static_cast<blasint>(ldc));
}

template <typename T>
void AddRowBias(const T* bias, int64_t rows, int64_t cols, T* y) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] += bias[c];
  }
}

template <typename T>
void AccumulateColumnSums(const T* dy, int64_t rows, int64_t cols, T* db) {
  // Threads own column blocks; inside a block rows are added in order, so the
  // bits do not depend on the thread count.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(cols, c0 + kBlock);
    T acc[kBlock];
    for (int64_t c = c0; c < c1; ++c) acc[c - c0] = T(0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = dy + r * cols;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; ++c) db[c] += acc[c - c0];
  }
}

#define BATON_INSTANTIATE(T)                                                                    \
  template void Gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                        int64_t, T, T*, int64_t);                                              \
  template void AddRowBias<T>(const T*, int64_t, int64_t, T*);                                 \
  template void AccumulateColumnSums<T>(const T*, int64_t, int64_t, T*);
BATON_INSTANTIATE(float)
BATON_INSTANTIATE(double)
#undef BATON_INSTANTIATE

}  // namespace baton::cpu
