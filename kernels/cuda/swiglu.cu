// SwiGLU kernels and launchers (see swiglu.h); fp32 math, grid-stride loop.
// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))).
#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/swiglu.h"

namespace baton::cuda {
namespace {

template <typename T>
__global__ void SwiGluForwardKernel(const T* gate, const T* up, int64_t n, T* h) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = ToF32(gate[i]);
    const float sig = 1.f / (1.f + expf(-g));
    h[i] = FromF32<T>(g * sig * ToF32(up[i]));
  }
}

template <typename T>
__global__ void SwiGluBackwardKernel(const T* dh, const T* gate, const T* up, int64_t n, T* dgate,
                                     T* dup) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = ToF32(gate[i]);
    const float u = ToF32(up[i]);
    const float d = ToF32(dh[i]);
    const float sig = 1.f / (1.f + expf(-g));
    dup[i] = FromF32<T>(d * g * sig);
    dgate[i] = FromF32<T>(d * u * sig * (1.f + g * (1.f - sig)));
  }
}

unsigned GridFor(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(CeilDiv(n, 256), 65536)); }

}  // namespace

absl::Status SwiGluForward(Float t, const void* gate, const void* up, int64_t n, void* h,
                           cudaStream_t stream) {
  BATON_CHECK(n >= 0);
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    SwiGluForwardKernel<T><<<GridFor(n), 256, 0, stream>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), n, static_cast<T*>(h));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status SwiGluBackward(Float t, const void* dh, const void* gate, const void* up, int64_t n,
                            void* dgate, void* dup, cudaStream_t stream) {
  BATON_CHECK(n >= 0);
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    SwiGluBackwardKernel<T><<<GridFor(n), 256, 0, stream>>>(
        static_cast<const T*>(dh), static_cast<const T*>(gate), static_cast<const T*>(up), n,
        static_cast<T*>(dgate), static_cast<T*>(dup));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
