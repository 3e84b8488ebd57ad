// Parameter initialisation drawn on the GPU: the values of runtime/rng.h's
// host fills (FillNormal, FillNormal2D), bit for bit, written straight into
// device memory, so a 1.3B model starts without drawing 1.3 G normals on
// the host and copying them up. Both sides call kernels/philox_normal.h;
// tests/kernels/philox_init_gpu_test.cc compares them bitwise. Also the
// constant fill the norm weights (ones) and biases (zeros) start from.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace baton::cuda {

// dst (rows, cols) f32, row-major, contiguous, on the device: element
// (r, c) = std · NormalAt(seed, name_hash, (row0 + r)·logical_cols + col0 + c),
// rounded once from double to f32 as the host fill does. A 1-D fill of n
// elements from logical offset o is rows = 1, cols = n, logical_cols = 0,
// col0 = o. InvalidArgument for negative sizes or offsets, or a region
// wider than logical_cols when rows > 1.
absl::Status PhiloxNormalFill(float* dst, int64_t rows, int64_t cols, int64_t logical_cols, int64_t row0,
                              int64_t col0, uint64_t seed, uint64_t name_hash, float std, cudaStream_t stream);

// dst[0, n) = value.
absl::Status ConstantFill(float* dst, int64_t n, float value, cudaStream_t stream);

}  // namespace baton::cuda
