// Elementwise ops and reductions on the GPU (reference:
// kernels/cpu/elementwise.h), fp32 math on f32/bf16 storage. Reductions
// (SumSquares, Sum, ColumnSums) are deterministic: fixed grid, per-thread
// partials in double (Sum*) or fp32 over fixed row chunks (ColumnSums),
// combined in a fixed order. Sum* synchronise the stream to return a value.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status Add(Float t, const void* a, const void* b, int64_t n, void* out, cudaStream_t stream);
absl::Status AddInPlace(Float t, void* y, const void* x, int64_t n, cudaStream_t stream);
absl::Status Scale(Float t, void* x, int64_t n, float s, cudaStream_t stream);
// out = in converted between dtypes (round-to-nearest-even into bf16).
absl::Status Convert(Float t_in, const void* in, int64_t n, Float t_out, void* out,
                     cudaStream_t stream);
absl::StatusOr<double> SumSquares(Float t, const void* x, int64_t n, cudaStream_t stream);
absl::StatusOr<double> Sum(Float t, const void* x, int64_t n, cudaStream_t stream);
// out (c) += Σ_rows x (n, c); out in `t_out` (f32, or like x).
absl::Status AccumulateColumnSums(Float t, const void* x, int64_t n, int64_t c, Float t_out,
                                  void* out, cudaStream_t stream);

}  // namespace baton::cuda
