// Distillation loss kernels and launchers (see distill_loss.h; reference:
// kernels/cpu/distill_loss.cc). One block per row for the max, sum and
// gradient passes, threads striding over the row's v logits (coalesced);
// the per-row loss is one thread per row. expf, not __expf: the statistics
// are compared with the CPU's double-precision ones, and these passes are
// a small part of a step next to the lm-head GEMMs of two models.
#include <cmath>

#include "kernels/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/distill_loss.h"

namespace baton::cuda {
namespace {

constexpr int kThreads = 256;
// Row indices of the statistics, as in kernels/cpu/distill_loss.h.
constexpr int kMaxStudentT = 0, kMaxTeacherT = 1, kMaxStudent = 2;
constexpr int kSumStudentT = 0, kSumTeacherT = 1, kSumStudent = 2, kSumTeacherDiff = 3, kSumTarget = 4;

template <typename T>
__global__ void __launch_bounds__(kThreads) RowMaxKernel(const T* __restrict__ student, const T* __restrict__ teacher,
                                                         int64_t n, int64_t v, float inv_t, float* __restrict__ max) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* s = student + r * v;
  const T* t = teacher + r * v;
  float ms = -INFINITY, mt = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    ms = fmaxf(ms, ToF32(s[j]));
    mt = fmaxf(mt, ToF32(t[j]));
  }
  ms = BlockMax(ms, scratch);
  mt = BlockMax(mt, scratch);
  if (threadIdx.x == 0) {
    max[kMaxStudentT * n + r] = ms * inv_t;
    max[kMaxTeacherT * n + r] = mt * inv_t;
    max[kMaxStudent * n + r] = ms;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) RowSumsKernel(const T* __restrict__ student, const T* __restrict__ teacher,
                                                          const int32_t* __restrict__ targets, int64_t vocab_start,
                                                          int64_t n, int64_t v, float inv_t,
                                                          const float* __restrict__ max, float* __restrict__ sums) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* s = student + r * v;
  const T* t = teacher + r * v;
  const float ms_t = max[kMaxStudentT * n + r], mt_t = max[kMaxTeacherT * n + r], m1 = max[kMaxStudent * n + r];
  float zs = 0.f, zt = 0.f, z1 = 0.f, w = 0.f;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float sj = ToF32(s[j]), tj = ToF32(t[j]);
    zs += expf(sj * inv_t - ms_t);
    const float e = expf(tj * inv_t - mt_t);
    zt += e;
    z1 += expf(sj - m1);
    if (e != 0.f) w += e * ((tj - sj) * inv_t);
  }
  zs = BlockSum(zs, scratch);
  zt = BlockSum(zt, scratch);
  z1 = BlockSum(z1, scratch);
  w = BlockSum(w, scratch);
  if (threadIdx.x == 0) {
    const int32_t y = targets[r];
    const int64_t hit = static_cast<int64_t>(y) - vocab_start;
    sums[kSumStudentT * n + r] = zs;
    sums[kSumTeacherT * n + r] = zt;
    sums[kSumStudent * n + r] = z1;
    sums[kSumTeacherDiff * n + r] = w;
    sums[kSumTarget * n + r] = y >= 0 && hit >= 0 && hit < v ? ToF32(s[hit]) : 0.f;
  }
}

__global__ void RowLossKernel(const int32_t* __restrict__ targets, int64_t n, const float* __restrict__ max,
                              const float* __restrict__ sums, float alpha, float temperature,
                              float* __restrict__ losses) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  if (targets[r] < 0) {
    losses[r] = losses[n + r] = losses[2 * n + r] = 0.f;
    return;
  }
  const float zt = sums[kSumTeacherT * n + r];
  const float lse_s = max[kMaxStudentT * n + r] + logf(sums[kSumStudentT * n + r]);
  const float lse_t = max[kMaxTeacherT * n + r] + logf(zt);
  const float kl = sums[kSumTeacherDiff * n + r] / zt - lse_t + lse_s;
  const float ce = logf(sums[kSumStudent * n + r]) + max[kMaxStudent * n + r] - sums[kSumTarget * n + r];
  losses[r] = alpha * temperature * temperature * kl + (1.f - alpha) * ce;
  losses[n + r] = kl;
  losses[2 * n + r] = ce;
}

// Element j is read and then written by the same thread: dstudent may alias student.
template <typename T>
__global__ void __launch_bounds__(kThreads) BackwardKernel(const T* student, const T* __restrict__ teacher,
                                                           const int32_t* __restrict__ targets, int64_t vocab_start,
                                                           int64_t n, int64_t v, const float* __restrict__ max,
                                                           const float* __restrict__ sums, float alpha,
                                                           float temperature, float grad_scale, T* dstudent) {
  const int64_t r = blockIdx.x;
  T* d = dstudent + r * v;
  if (targets[r] < 0) {
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) d[j] = FromF32<T>(0.f);
    return;
  }
  const T* s = student + r * v;
  const T* t = teacher + r * v;
  const float inv_t = 1.f / temperature;
  const float ms_t = max[kMaxStudentT * n + r], mt_t = max[kMaxTeacherT * n + r], m1 = max[kMaxStudent * n + r];
  const float inv_zs = 1.f / sums[kSumStudentT * n + r], inv_zt = 1.f / sums[kSumTeacherT * n + r],
              inv_z1 = 1.f / sums[kSumStudent * n + r];
  const float kd = alpha * temperature, kce = 1.f - alpha;
  const int64_t hit = static_cast<int64_t>(targets[r]) - vocab_start;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float sj = ToF32(s[j]), tj = ToF32(t[j]);
    const float prob = expf(sj - m1) * inv_z1;
    const float q = expf(sj * inv_t - ms_t) * inv_zs;
    const float p = expf(tj * inv_t - mt_t) * inv_zt;
    d[j] = FromF32<T>((kce * (prob - (j == hit ? 1.f : 0.f)) + kd * (q - p)) * grad_scale);
  }
}

void CheckSizes(int64_t n, int64_t v) { BATON_CHECK(n >= 0 && v > 0 && n < (int64_t{1} << 31)); }

}  // namespace

absl::Status DistillRowMax(Float t, const void* student, const void* teacher, int64_t n, int64_t v,
                           float temperature, float* max, cudaStream_t stream) {
  CheckSizes(n, v);
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RowMaxKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        static_cast<const T*>(student), static_cast<const T*>(teacher), n, v, 1.f / temperature, max);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status DistillRowSums(Float t, const void* student, const void* teacher, const int32_t* targets,
                            int64_t vocab_start, int64_t n, int64_t v, float temperature, const float* max,
                            float* sums, cudaStream_t stream) {
  CheckSizes(n, v);
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RowSumsKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        static_cast<const T*>(student), static_cast<const T*>(teacher), targets, vocab_start, n, v,
        1.f / temperature, max, sums);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status DistillRowLoss(const int32_t* targets, int64_t n, const float* max, const float* sums, float alpha,
                            float temperature, float* losses, cudaStream_t stream) {
  CheckSizes(n, 1);
  if (n == 0) return absl::OkStatus();
  RowLossKernel<<<static_cast<unsigned>(CeilDiv(n, kThreads)), kThreads, 0, stream>>>(targets, n, max, sums, alpha,
                                                                                      temperature, losses);
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status DistillBackward(Float t, const void* student, const void* teacher, const int32_t* targets,
                             int64_t vocab_start, int64_t n, int64_t v, const float* max, const float* sums,
                             float alpha, float temperature, float grad_scale, void* dstudent, cudaStream_t stream) {
  CheckSizes(n, v);
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    BackwardKernel<T><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        static_cast<const T*>(student), static_cast<const T*>(teacher), targets, vocab_start, n, v, max, sums, alpha,
        temperature, grad_scale, static_cast<T*>(dstudent));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
