// Dense matrix multiply for the CPU reference backend: a thin, typed
// wrapper over OpenBLAS cblas_?gemm (row-major), plus the two bias helpers
// a linear layer needs. GEMM is the hot path of training, so it goes to
// BLAS; the helpers are plain loops. Callers (runtime/ops.cc) check shapes.
// Determinism: OpenBLAS partitions level-3 work over M and N, never K, so
// each output element is reduced in one fixed order.
#pragma once

#include <cstdint>

namespace baton::cpu {

// c (m, n) = alpha · op(a) · op(b) + beta · c; op(a) is (m, k), op(b) (k, n).
// lda/ldb/ldc are the row strides of a, b, c as stored (row-major).
template <typename T>
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// y (rows, cols) += bias (cols) on every row.
template <typename T>
void AddRowBias(const T* bias, int64_t rows, int64_t cols, T* y);

// db (cols) += Σ_rows dy (rows, cols); each column summed in row order.
template <typename T>
void AccumulateColumnSums(const T* dy, int64_t rows, int64_t cols, T* db);

}  // namespace baton::cpu
