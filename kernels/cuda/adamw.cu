// Multi-tensor AdamW kernel and launcher (see adamw.h). The tensor list
// travels by value as a kernel parameter; each block owns one chunk of one
// tensor (a prefix table maps blockIdx.x to the tensor).
#include <cmath>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"

namespace baton::cuda {
namespace {

constexpr int kMaxTensors = 48;
constexpr int kThreads = 256;
constexpr int64_t kChunk = 8192;  // elements per block

struct AdamWBatch {
  AdamWTensor t[kMaxTensors];
  int block_start[kMaxTensors + 1];  // block prefix per tensor
  int count;
};

struct AdamWScalars {
  float b1, b2, one_m_b1, one_m_b2, inv_bc1, inv_bc2, lr, eps, wd, grad_scale;
};

__global__ void __launch_bounds__(kThreads) AdamWKernel(const __grid_constant__ AdamWBatch batch,
                                                        const AdamWScalars s) {
  int k = 0;
  while (k + 1 < batch.count && batch.block_start[k + 1] <= static_cast<int>(blockIdx.x)) ++k;
  const AdamWTensor& t = batch.t[k];
  const int64_t begin = static_cast<int64_t>(blockIdx.x - batch.block_start[k]) * kChunk;
  const int64_t end = min(t.n, begin + kChunk);
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const float g = t.g[i] * s.grad_scale;
    const float m = s.b1 * t.m[i] + s.one_m_b1 * g;
    const float v = s.b2 * t.v[i] + s.one_m_b2 * g * g;
    t.m[i] = m;
    t.v[i] = v;
    const float p = t.p[i];
    t.p[i] = p - s.lr * ((m * s.inv_bc1) / (sqrtf(v * s.inv_bc2) + s.eps) + s.wd * p);
  }
}

}  // namespace

absl::Status AdamWMultiTensor(const AdamWTensor* tensors, int count, const AdamWHyper& hp,
                              cudaStream_t stream) {
  BATON_CHECK(hp.step >= 1 && count >= 0);
  AdamWScalars s;
  s.b1 = static_cast<float>(hp.beta1);
  s.b2 = static_cast<float>(hp.beta2);
  s.one_m_b1 = static_cast<float>(1.0 - hp.beta1);
  s.one_m_b2 = static_cast<float>(1.0 - hp.beta2);
  s.inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(hp.beta1, static_cast<double>(hp.step))));
  s.inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(hp.beta2, static_cast<double>(hp.step))));
  s.lr = static_cast<float>(hp.lr);
  s.eps = static_cast<float>(hp.eps);
  s.wd = static_cast<float>(hp.weight_decay);
  s.grad_scale = hp.grad_scale;
  int i = 0;
  while (i < count) {
    AdamWBatch batch{};
    int blocks = 0;
    batch.count = 0;
    for (; i < count && batch.count < kMaxTensors; ++i) {
      const int64_t nb = CeilDiv(tensors[i].n, kChunk);
      if (nb == 0) continue;
      if (blocks + nb > (int64_t{1} << 30)) break;
      batch.t[batch.count] = tensors[i];
      batch.block_start[batch.count] = blocks;
      blocks += static_cast<int>(nb);
      ++batch.count;
    }
    batch.block_start[batch.count] = blocks;
    if (blocks == 0) continue;
    AdamWKernel<<<blocks, kThreads, 0, stream>>>(batch, s);
    BATON_CUDA_LAUNCH_CHECK();
  }
  return absl::OkStatus();
}

}  // namespace baton::cuda
