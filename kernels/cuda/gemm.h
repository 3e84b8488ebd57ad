// Row-major GEMM through cuBLASLt: c (m, n) = alpha·op(a)·op(b) + beta·c,
// optionally + bias (n) broadcast over rows (fused epilogue). a and b share
// one element type (f32, or bf16 with fp32 accumulation); c is f32 or the
// same type as a (bf16 in, f32 out is how parameter gradients accumulate).
// f32 inputs use strict fp32 compute (no TF32), so parity with the CPU is
// at fp32 rounding. lda/ldb/ldc are row strides in elements.
// One cuBLASLt handle and a 32 MiB workspace per device, created on first
// use, and one plan (descriptors + algorithm) per shape, made on its first
// call; calls from several host threads on one device are serialised.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

struct GemmArgs {
  Float t_ab = Float::kF32;  // a and b
  Float t_c = Float::kF32;   // c (and bias)
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* a = nullptr;  // (m, k), or (k, m) if trans_a
  int64_t lda = 0;
  const void* b = nullptr;  // (k, n), or (n, k) if trans_b
  int64_t ldb = 0;
  void* c = nullptr;  // (m, n)
  int64_t ldc = 0;
  const void* bias = nullptr;  // (n) in t_c, or null
};

absl::Status Gemm(const GemmArgs& args, cudaStream_t stream);

// Off (the default): each shape runs the heuristic's first algorithm, the
// same choice in every process, so runs and resumes repeat bit for bit.
// On: the first call of a shape times up to 8 ranked algorithms on its own
// operands and keeps the fastest; timing noise can pick another algorithm
// in another process (a different summation order: results differ at
// rounding level). Set before the first GEMM; benchmarks report both.
void SetGemmAutotune(bool on);

}  // namespace baton::cuda
