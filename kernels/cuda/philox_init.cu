// The device fills of philox_init.h. One thread per Philox block of a row:
// it draws both normals of the block (one Philox, one log, one sin/cos pair)
// and writes the one or two of them that fall inside the row, so a row that
// starts or ends on an odd logical index is handled like the host's fill.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/philox_init.h"
#include "kernels/philox_normal.h"

namespace baton::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 16;  // grid-stride beyond this

// pairs_per_row = cols / 2 + 1 covers a row whatever the parity of its start.
__global__ void PhiloxNormalKernel(float* dst, int64_t rows, int64_t cols, int64_t pairs_per_row,
                                   int64_t logical_cols, int64_t row0, int64_t col0, uint64_t seed,
                                   uint64_t name_hash, double std) {
  const int64_t total = rows * pairs_per_row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / pairs_per_row, t = i - r * pairs_per_row;
    const int64_t base = (row0 + r) * logical_cols + col0;  // logical index of dst(r, 0)
    const int64_t block = base / 2 + t;
    const int64_t c = 2 * block - base;  // column of element 2·block: -1 when the row starts odd
    if (c >= cols) continue;
    const philox::NormalPair z = philox::NormalPairAt(seed, name_hash, static_cast<uint64_t>(block));
    float* row = dst + r * cols;
    if (c >= 0) row[c] = static_cast<float>(philox::Mul(std, z.first));
    if (c + 1 < cols) row[c + 1] = static_cast<float>(philox::Mul(std, z.second));
  }
}

__global__ void ConstantKernel(float* dst, int64_t n, float value) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = value;
  }
}

unsigned Blocks(int64_t work) { return static_cast<unsigned>(std::min(kMaxBlocks, (work + kThreads - 1) / kThreads)); }

}  // namespace

absl::Status PhiloxNormalFill(float* dst, int64_t rows, int64_t cols, int64_t logical_cols, int64_t row0,
                              int64_t col0, uint64_t seed, uint64_t name_hash, float std, cudaStream_t stream) {
  if (rows < 0 || cols < 0 || row0 < 0 || col0 < 0 || logical_cols < 0) {
    return absl::InvalidArgumentError(absl::StrCat("PhiloxNormalFill: negative size or offset: rows ", rows,
                                                   " cols ", cols, " logical_cols ", logical_cols, " row0 ", row0,
                                                   " col0 ", col0));
  }
  if (rows > 1 && col0 + cols > logical_cols) {
    return absl::InvalidArgumentError(absl::StrCat("PhiloxNormalFill: columns [", col0, ", ", col0 + cols,
                                                   ") exceed logical_cols ", logical_cols));
  }
  if (rows == 0 || cols == 0) return absl::OkStatus();
  const int64_t pairs_per_row = cols / 2 + 1;
  PhiloxNormalKernel<<<Blocks(rows * pairs_per_row), kThreads, 0, stream>>>(
      dst, rows, cols, pairs_per_row, logical_cols, row0, col0, seed, name_hash, static_cast<double>(std));
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status ConstantFill(float* dst, int64_t n, float value, cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("ConstantFill: n = ", n, " < 0"));
  if (n == 0) return absl::OkStatus();
  ConstantKernel<<<Blocks(n), kThreads, 0, stream>>>(dst, n, value);
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
