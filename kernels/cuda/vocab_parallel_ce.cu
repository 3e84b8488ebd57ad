// Vocab-parallel cross-entropy kernels and launchers (see
// vocab_parallel_ce.h). One block per row for the row reductions and the
// gradient, threads striding over the row's v_local logits (coalesced);
// PickTargets is one thread per row. Exponentials use expf (not __expf):
// the statistics are compared with the CPU's double-precision ones, and
// these kernels are a small part of a step next to the lm-head GEMM.
#include <cmath>

#include "kernels/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vocab_parallel_ce.h"

namespace baton::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) RowMaxKernel(const T* __restrict__ logits, int64_t v,
                                                         float* __restrict__ max) {
  __shared__ float scratch[32];
  const T* l = logits + static_cast<int64_t>(blockIdx.x) * v;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, ToF32(l[j]));
  m = BlockMax(m, scratch);
  if (threadIdx.x == 0) max[blockIdx.x] = m;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) RowSumExpKernel(const T* __restrict__ logits, const float* __restrict__ max,
                                                            int64_t v, float* __restrict__ sum) {
  __shared__ float scratch[32];
  const T* l = logits + static_cast<int64_t>(blockIdx.x) * v;
  const float m = max[blockIdx.x];
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) s += expf(ToF32(l[j]) - m);
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) sum[blockIdx.x] = s;
}

template <typename T>
__global__ void PickTargetsKernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                                  int64_t vocab_start, int64_t n, int64_t v, float* __restrict__ out) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int32_t t = targets[r];
  const int64_t j = static_cast<int64_t>(t) - vocab_start;
  out[r] = t >= 0 && j >= 0 && j < v ? ToF32(logits[r * v + j]) : 0.f;
}

// Each element is read and then written by the same thread, so dlogits may
// alias logits.
template <typename T>
__global__ void __launch_bounds__(kThreads) CrossEntropyKernel(const T* logits, const int32_t* __restrict__ targets,
                                                               int64_t vocab_start, const float* __restrict__ max,
                                                               const float* __restrict__ sum,
                                                               const float* __restrict__ target_logit, int64_t v,
                                                               float* __restrict__ losses, T* dlogits,
                                                               float grad_scale) {
  const int64_t r = blockIdx.x;
  const int32_t target = targets[r];
  T* d = dlogits != nullptr ? dlogits + r * v : nullptr;
  if (target < 0) {
    if (threadIdx.x == 0) losses[r] = 0.f;
    if (d != nullptr)
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) d[j] = FromF32<T>(0.f);
    return;
  }
  const float m = max[r], s = sum[r];
  if (threadIdx.x == 0) losses[r] = logf(s) + m - target_logit[r];
  if (d == nullptr) return;
  const float inv = 1.f / s;
  const int64_t hit = static_cast<int64_t>(target) - vocab_start;
  const T* l = logits + r * v;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float prob = expf(ToF32(l[j]) - m) * inv;
    d[j] = FromF32<T>((prob - (j == hit ? 1.f : 0.f)) * grad_scale);
  }
}

absl::Status CheckSizes(int64_t n, int64_t v) {
  BATON_CUDA_SIZE_CHECK(n >= 0 && v > 0 && n < (int64_t{1} << 31));
  return absl::OkStatus();
}

}  // namespace

absl::Status RowMax(Float t, const void* logits, int64_t n, int64_t v, float* max, cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckSizes(n, v));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RowMaxKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(static_cast<const T*>(logits), v, max);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status RowSumExp(Float t, const void* logits, const float* max, int64_t n, int64_t v, float* sum,
                       cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckSizes(n, v));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RowSumExpKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(static_cast<const T*>(logits), max, v,
                                                                          sum);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status PickTargets(Float t, const void* logits, const int32_t* targets, int64_t vocab_start, int64_t n,
                         int64_t v, float* target_logit, cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckSizes(n, v));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    PickTargetsKernel<T><<<static_cast<unsigned>(CeilDiv(n, kThreads)), kThreads, 0, stream>>>(
        static_cast<const T*>(logits), targets, vocab_start, n, v, target_logit);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status VocabParallelCrossEntropy(Float t, const void* logits, const int32_t* targets, int64_t vocab_start,
                                       const float* max, const float* sum, const float* target_logit, int64_t n,
                                       int64_t v, float* losses, void* dlogits, float grad_scale,
                                       cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckSizes(n, v));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    CrossEntropyKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        static_cast<const T*>(logits), targets, vocab_start, max, sum, target_logit, v, losses,
        static_cast<T*>(dlogits), grad_scale);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
