// RMSNorm kernels and launchers (see rms_norm.h). Each row is held by one
// warp: pass 1 sums x² (or dy·w·x), pass 2 writes; rows are short (≤ 16k),
// so the second read hits L1/L2.
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rms_norm.h"

namespace baton::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRowsPerChunk = 64;  // dw partials: one fp32 row per 64 input rows

template <typename T>
__global__ void RmsNormForwardKernel(const T* __restrict__ x, const T* __restrict__ w, float eps,
                                     int64_t n, int64_t c, T* __restrict__ y,
                                     float* __restrict__ rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xr = x + row * c;
  float ss = 0.f;
  for (int64_t j = lane; j < c; j += 32) {
    const float v = ToF32(xr[j]);
    ss += v * v;
  }
  ss = WarpSum(ss);
  const float rs = rsqrtf(ss / static_cast<float>(c) + eps);
  if (lane == 0) rstd[row] = rs;
  T* yr = y + row * c;
  for (int64_t j = lane; j < c; j += 32) yr[j] = FromF32<T>((ToF32(xr[j]) * rs) * ToF32(w[j]));
}

template <typename T>
__global__ void RmsNormBackwardDxKernel(const T* __restrict__ dy, const T* __restrict__ x,
                                        const T* __restrict__ w, const float* __restrict__ rstd,
                                        int64_t n, int64_t c, T* __restrict__ dx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xr = x + row * c;
  const T* dyr = dy + row * c;
  float dot = 0.f;
  for (int64_t j = lane; j < c; j += 32) dot += ToF32(dyr[j]) * ToF32(w[j]) * ToF32(xr[j]);
  dot = WarpSum(dot);
  const float rs = rstd[row];
  const float coef = rs * rs * rs * dot / static_cast<float>(c);
  T* dxr = dx + row * c;
  for (int64_t j = lane; j < c; j += 32)
    dxr[j] = FromF32<T>(rs * ToF32(dyr[j]) * ToF32(w[j]) - coef * ToF32(xr[j]));
}

// partial (chunks, c): partial[k, j] = Σ_{rows of chunk k} dy·x·rstd.
template <typename T>
__global__ void RmsNormDwPartialKernel(const T* __restrict__ dy, const T* __restrict__ x,
                                       const float* __restrict__ rstd, int64_t n, int64_t c,
                                       float* __restrict__ partial) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (j >= c) return;
  const int64_t r0 = chunk * kRowsPerChunk;
  const int64_t r1 = min(n, r0 + kRowsPerChunk);
  float acc = 0.f;
  for (int64_t r = r0; r < r1; ++r) acc += ToF32(dy[r * c + j]) * (ToF32(x[r * c + j]) * rstd[r]);
  partial[chunk * c + j] = acc;
}

template <typename TW>
__global__ void SumChunksKernel(const float* __restrict__ partial, int64_t chunks, int64_t c,
                                TW* __restrict__ dw) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float acc = 0.f;
  for (int64_t k = 0; k < chunks; ++k) acc += partial[k * c + j];
  dw[j] = FromF32<TW>(ToF32(dw[j]) + acc);
}

}  // namespace

absl::Status RmsNormForward(Float t, const void* x, const void* w, float eps, int64_t n,
                            int64_t c, void* y, float* rstd, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0);
  if (n == 0) return absl::OkStatus();
  const dim3 grid(static_cast<unsigned>(CeilDiv(n, kWarpsPerBlock)));
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RmsNormForwardKernel<T><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), eps, n, c, static_cast<T*>(y), rstd);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status RmsNormBackward(Float t, Float tw, const void* dy, const void* x, const void* w,
                             const float* rstd, int64_t n, int64_t c, void* dx, void* dw,
                             cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0);
  if (n == 0) return absl::OkStatus();
  const int64_t chunks = CeilDiv(n, kRowsPerChunk);
  BATON_CHECK(chunks < 65536);  // grid.y
  float* partial = nullptr;  // (chunks, c) fp32, from the stream-ordered pool
  BATON_CHECK_CUDA(cudaMallocAsync(&partial, sizeof(float) * chunks * c, stream));
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RmsNormBackwardDxKernel<T><<<static_cast<unsigned>(CeilDiv(n, kWarpsPerBlock)),
                                 32 * kWarpsPerBlock, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd, n, c,
        static_cast<T*>(dx));
    const dim3 grid(static_cast<unsigned>(CeilDiv(c, 128)), static_cast<unsigned>(chunks));
    RmsNormDwPartialKernel<T><<<grid, 128, 0, stream>>>(static_cast<const T*>(dy),
                                                        static_cast<const T*>(x), rstd, n, c,
                                                        partial);
  });
  DispatchFloat(tw, [&](auto tag) {
    using TW = decltype(tag);
    SumChunksKernel<TW><<<static_cast<unsigned>(CeilDiv(c, 256)), 256, 0, stream>>>(
        partial, chunks, c, static_cast<TW*>(dw));
  });
  BATON_CUDA_LAUNCH_CHECK();
  BATON_CHECK_CUDA(cudaFreeAsync(partial, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
