// Offline distillation loss kernels and launchers (see distill_topk.h;
// reference: kernels/cpu/distill_topk.cc). One block per row, threads
// striding over the row's v logits (coalesced). The sums and gradient
// passes first mark the row's kept ids that fall in this shard in a
// shared-memory bitmap (atomicOr of k bits), so telling a kept id from the
// rest costs one shared load per logit, whatever k is. The gradient pass
// writes the rest first and the kept ids after, by the thread of their
// top-k slot: with dstudent aliasing the student, a kept logit is still
// unwritten when its slot's thread reads it. expf, not __expf: the results
// are compared with the CPU's double-precision ones.
#include <cmath>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#include "kernels/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/distill_topk.h"

namespace baton::cuda {
namespace {

constexpr int kThreads = 256;
// Row indices of the sums, as in kernels/cpu/distill_topk.h.
constexpr int kSumStudentT = 0, kSumRest = 1, kSumStudent = 2, kSumTarget = 3, kSumKept = 4;

// Marks the row's kept ids in [vocab_start, vocab_start + v) in `kept`
// ((v + 31) / 32 words of dynamic shared memory); ends with a barrier.
__device__ __forceinline__ void MarkKept(const int32_t* __restrict__ ids, int64_t k, int64_t vocab_start, int64_t v,
                                         uint32_t* kept) {
  const int64_t words = (v + 31) / 32;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) kept[w] = 0u;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const int64_t j = static_cast<int64_t>(ids[i]) - vocab_start;
    if (j >= 0 && j < v) atomicOr(&kept[j >> 5], 1u << (j & 31));
  }
  __syncthreads();
}

__device__ __forceinline__ bool IsKept(const uint32_t* kept, int64_t j) { return (kept[j >> 5] >> (j & 31)) & 1u; }

template <typename T>
__global__ void __launch_bounds__(kThreads) RowMaxKernel(const T* __restrict__ student, int64_t v,
                                                         float* __restrict__ max) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* s = student + r * v;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, ToF32(s[j]));
  m = BlockMax(m, scratch);
  if (threadIdx.x == 0) max[r] = m;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) RowSumsKernel(const T* __restrict__ student,
                                                          const int32_t* __restrict__ indices,
                                                          const int32_t* __restrict__ targets, int64_t vocab_start,
                                                          int64_t n, int64_t v, int64_t k, float inv_t,
                                                          const float* __restrict__ max, float* __restrict__ sums) {
  extern __shared__ uint32_t kept[];
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* s = student + r * v;
  const int32_t* ids = indices + r * k;
  MarkKept(ids, k, vocab_start, v, kept);
  const float m1 = max[r], ms = m1 * inv_t;  // max(s/T) = max(s)/T for T > 0
  float zs = 0.f, zs_rest = 0.f, z1 = 0.f;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float sj = ToF32(s[j]);
    const float e = expf(sj * inv_t - ms);
    zs += e;
    if (!IsKept(kept, j)) zs_rest += e;
    z1 += expf(sj - m1);
  }
  zs = BlockSum(zs, scratch);
  zs_rest = BlockSum(zs_rest, scratch);
  z1 = BlockSum(z1, scratch);
  if (threadIdx.x == 0) {
    const int32_t y = targets[r];
    const int64_t hit = static_cast<int64_t>(y) - vocab_start;
    sums[kSumStudentT * n + r] = zs;
    sums[kSumRest * n + r] = zs_rest;
    sums[kSumStudent * n + r] = z1;
    sums[kSumTarget * n + r] = y >= 0 && hit >= 0 && hit < v ? ToF32(s[hit]) : 0.f;
  }
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const int64_t j = static_cast<int64_t>(ids[i]) - vocab_start;
    sums[(kSumKept + i) * n + r] = j >= 0 && j < v ? ToF32(s[j]) : 0.f;
  }
}

__global__ void __launch_bounds__(kThreads) RowLossKernel(const float* __restrict__ values,
                                                          const float* __restrict__ rest_lse,
                                                          const int32_t* __restrict__ targets, int64_t n, int64_t k,
                                                          const float* __restrict__ max,
                                                          const float* __restrict__ sums, float alpha,
                                                          float temperature, float* __restrict__ losses,
                                                          float* __restrict__ norm) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  if (targets[r] < 0) {
    if (threadIdx.x == 0) {
      losses[r] = losses[n + r] = losses[2 * n + r] = 0.f;
      norm[r] = norm[n + r] = 0.f;
    }
    return;
  }
  const float inv_t = 1.f / temperature;
  const float* tv = values + r * k;
  const float rest = rest_lse[r];
  const bool no_rest = isinf(rest);  // k = V: the top-k is the whole distribution
  // The teacher's L = log(Σ exp(v_i/T) + exp(rest)).
  float mt = -INFINITY;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) mt = fmaxf(mt, tv[i] * inv_t);
  mt = fmaxf(BlockMax(mt, scratch), rest);
  float zt = 0.f;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) zt += expf(tv[i] * inv_t - mt);
  zt = BlockSum(zt, scratch) + (no_rest ? 0.f : expf(rest - mt));
  const float lt = mt + logf(zt);
  const float m1 = max[r], ms = m1 * inv_t;
  const float log_zs = logf(sums[kSumStudentT * n + r]);
  float kl = 0.f;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const float log_p = tv[i] * inv_t - lt;
    const float log_q = sums[(kSumKept + i) * n + r] * inv_t - ms - log_zs;
    const float p = expf(log_p);
    if (p > 0.f) kl += p * (log_p - log_q);
  }
  kl = BlockSum(kl, scratch);
  if (threadIdx.x != 0) return;
  const float p_rest = no_rest ? 0.f : expf(rest - lt);
  if (p_rest > 0.f) kl += p_rest * ((rest - lt) - (logf(sums[kSumRest * n + r]) - log_zs));
  const float ce = logf(sums[kSumStudent * n + r]) + m1 - sums[kSumTarget * n + r];
  losses[r] = alpha * temperature * temperature * kl + (1.f - alpha) * ce;
  losses[n + r] = kl;
  losses[2 * n + r] = ce;
  norm[r] = lt;
  norm[n + r] = p_rest;
}

// The gradient of one logit: p is the teacher's share p̃_j of it.
__device__ __forceinline__ float Grad(float sj, float p, bool hit, float inv_t, float ms, float m1, float inv_zs,
                                      float inv_z1, float kd, float kce, float grad_scale) {
  const float q = expf(sj * inv_t - ms) * inv_zs;
  const float prob = expf(sj - m1) * inv_z1;
  return (kce * (prob - (hit ? 1.f : 0.f)) + kd * (q - p)) * grad_scale;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) BackwardKernel(const T* student, const float* __restrict__ values,
                                                           const int32_t* __restrict__ indices,
                                                           const int32_t* __restrict__ targets, int64_t vocab_start,
                                                           int64_t n, int64_t v, int64_t k,
                                                           const float* __restrict__ max,
                                                           const float* __restrict__ sums,
                                                           const float* __restrict__ norm, float alpha,
                                                           float temperature, float grad_scale, T* dstudent) {
  extern __shared__ uint32_t kept[];
  const int64_t r = blockIdx.x;
  T* d = dstudent + r * v;
  if (targets[r] < 0) {
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) d[j] = FromF32<T>(0.f);
    return;
  }
  const T* s = student + r * v;
  const int32_t* ids = indices + r * k;
  MarkKept(ids, k, vocab_start, v, kept);
  const float inv_t = 1.f / temperature, m1 = max[r], ms = m1 * inv_t;
  const float zs_rest = sums[kSumRest * n + r];
  const float inv_zs = 1.f / sums[kSumStudentT * n + r], inv_z1 = 1.f / sums[kSumStudent * n + r];
  const float lt = norm[r], p_rest = norm[n + r];
  const float rest_share = zs_rest > 0.f ? p_rest / zs_rest : 0.f;  // p̃_j = rest_share·e_j off the top-k
  const float kd = alpha * temperature, kce = 1.f - alpha;
  const int64_t hit = static_cast<int64_t>(targets[r]) - vocab_start;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    if (IsKept(kept, j)) continue;
    const float sj = ToF32(s[j]);
    const float p = rest_share * expf(sj * inv_t - ms);
    d[j] = FromF32<T>(Grad(sj, p, j == hit, inv_t, ms, m1, inv_zs, inv_z1, kd, kce, grad_scale));
  }
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const int64_t j = static_cast<int64_t>(ids[i]) - vocab_start;
    if (j < 0 || j >= v) continue;
    const float p = expf(values[r * k + i] * inv_t - lt);
    d[j] = FromF32<T>(Grad(ToF32(s[j]), p, j == hit, inv_t, ms, m1, inv_zs, inv_z1, kd, kce, grad_scale));
  }
}

void CheckSizes(int64_t n, int64_t v, int64_t k) {
  BATON_CHECK(n >= 0 && v > 0 && k > 0 && n < (int64_t{1} << 31));
}

// Dynamic shared memory of the bitmap; InvalidArgument past the 48 KiB a launch may take unasked.
absl::StatusOr<size_t> BitmapBytes(int64_t v) {
  if (v > kOfflineMaxShard) {
    return absl::InvalidArgumentError(absl::StrCat("offline distillation on the GPU: a vocabulary shard of ", v,
                                                   " ids is above ", kOfflineMaxShard, " (raise parallel.tp)"));
  }
  return static_cast<size_t>((v + 31) / 32) * sizeof(uint32_t);
}

}  // namespace

absl::Status OfflineRowMax(Float t, const void* student, int64_t n, int64_t v, float* max, cudaStream_t stream) {
  CheckSizes(n, v, 1);
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RowMaxKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(static_cast<const T*>(student), v, max);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status OfflineRowSums(Float t, const void* student, const int32_t* indices, const int32_t* targets,
                            int64_t vocab_start, int64_t n, int64_t v, int64_t k, float temperature,
                            const float* max, float* sums, cudaStream_t stream) {
  CheckSizes(n, v, k);
  BATON_ASSIGN_OR_RETURN(const size_t smem, BitmapBytes(v));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RowSumsKernel<T><<<static_cast<unsigned>(n), kThreads, smem, stream>>>(
        static_cast<const T*>(student), indices, targets, vocab_start, n, v, k, 1.f / temperature, max, sums);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status OfflineRowLoss(const float* values, const float* rest_lse, const int32_t* targets, int64_t n,
                            int64_t k, const float* max, const float* sums, float alpha, float temperature,
                            float* losses, float* norm, cudaStream_t stream) {
  CheckSizes(n, 1, k);
  if (n == 0) return absl::OkStatus();
  RowLossKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(values, rest_lse, targets, n, k, max, sums, alpha,
                                                                  temperature, losses, norm);
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status OfflineBackward(Float t, const void* student, const float* values, const int32_t* indices,
                             const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v, int64_t k,
                             const float* max, const float* sums, const float* norm, float alpha, float temperature,
                             float grad_scale, void* dstudent, cudaStream_t stream) {
  CheckSizes(n, v, k);
  BATON_ASSIGN_OR_RETURN(const size_t smem, BitmapBytes(v));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    BackwardKernel<T><<<static_cast<unsigned>(n), kThreads, smem, stream>>>(
        static_cast<const T*>(student), values, indices, targets, vocab_start, n, v, k, max, sums, norm, alpha,
        temperature, grad_scale, static_cast<T*>(dstudent));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
