// RoPE kernel and launcher (see rope.h). One thread per (b, t, i) pair
// index computes the inverse frequency and sin/cos once and rotates that
// pair in all h heads. RopeParams travels by value as a kernel argument.
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.h"

namespace baton::cuda {
namespace {

template <typename T>
__global__ void RopeKernel(T* __restrict__ x, int64_t bt, int64_t seq, int64_t h, int64_t d,
                           RopeParams params, bool inverse) {
  const int64_t half = d / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= bt * half) return;
  const int64_t i = idx % half;
  const int64_t row = idx / half;  // b·seq + t
  const int64_t p = row % seq;
  const double inv_freq = RopeInverseFrequency(params, i, d);
  double s, c;
  sincos(static_cast<double>(p) * inv_freq, &s, &c);
  const float cf = static_cast<float>(c);
  const float sf = static_cast<float>(inverse ? -s : s);
  for (int64_t hh = 0; hh < h; ++hh) {
    T* x1 = x + (row * h + hh) * d + i;
    T* x2 = x1 + half;
    const float a = ToF32(*x1), b = ToF32(*x2);
    *x1 = FromF32<T>(a * cf - b * sf);
    *x2 = FromF32<T>(b * cf + a * sf);
  }
}

}  // namespace

absl::Status RopeRotate(Float t, void* x, int64_t b, int64_t seq, int64_t h, int64_t d,
                        const RopeParams& p, bool inverse, cudaStream_t stream) {
  BATON_CHECK(b >= 0 && seq >= 0 && h >= 0 && d > 0 && d % 2 == 0);
  const int64_t work = b * seq * (d / 2);
  if (work == 0 || h == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RopeKernel<T><<<static_cast<unsigned>(CeilDiv(work, 256)), 256, 0, stream>>>(
        static_cast<T*>(x), b * seq, seq, h, d, p, inverse);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
