// SwiGLU kernels and launchers (see swiglu.h); fp32 math, grid-stride loop,
// eight elements per load where the pointers allow.
// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))).
#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/swiglu.h"

namespace baton::cuda {
namespace {

__device__ __forceinline__ float SwiGluH(float g, float u) { return g * (1.f / (1.f + expf(-g))) * u; }
__device__ __forceinline__ void SwiGluGrads(float d, float g, float u, float& dg, float& du) {
  const float sig = 1.f / (1.f + expf(-g));
  du = d * g * sig;
  dg = d * u * sig * (1.f + g * (1.f - sig));
}

// kPacked: every pointer 16-byte aligned, eight elements per load
// (common.cuh); the n % 8 tail element by element.
template <typename T, bool kPacked>
__global__ void SwiGluForwardKernel(const T* gate, const T* up, int64_t n, T* h) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (kPacked) {
    const int64_t packs = n / kPack;
    for (int64_t k = first; k < packs; k += stride) {
      const Pack<T> g = LoadPack(gate, k), u = LoadPack(up, k);
      Pack<T> r;
#pragma unroll
      for (int e = 0; e < kPack; ++e) r.v[e] = FromF32<T>(SwiGluH(ToF32(g.v[e]), ToF32(u.v[e])));
      StorePack(h, k, r);
    }
    done = packs * kPack;
  }
  for (int64_t i = done + first; i < n; i += stride) h[i] = FromF32<T>(SwiGluH(ToF32(gate[i]), ToF32(up[i])));
}

template <typename T, bool kPacked>
__global__ void SwiGluBackwardKernel(const T* dh, const T* gate, const T* up, int64_t n, T* dgate,
                                     T* dup) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if constexpr (kPacked) {
    const int64_t packs = n / kPack;
    for (int64_t k = first; k < packs; k += stride) {
      const Pack<T> d = LoadPack(dh, k), g = LoadPack(gate, k), u = LoadPack(up, k);
      Pack<T> rg, ru;
#pragma unroll
      for (int e = 0; e < kPack; ++e) {
        float dg, du;
        SwiGluGrads(ToF32(d.v[e]), ToF32(g.v[e]), ToF32(u.v[e]), dg, du);
        rg.v[e] = FromF32<T>(dg);
        ru.v[e] = FromF32<T>(du);
      }
      StorePack(dup, k, ru);  // dup before dgate, as the element loop writes them
      StorePack(dgate, k, rg);
    }
    done = packs * kPack;
  }
  for (int64_t i = done + first; i < n; i += stride) {
    float dg, du;
    SwiGluGrads(ToF32(dh[i]), ToF32(gate[i]), ToF32(up[i]), dg, du);
    dup[i] = FromF32<T>(du);
    dgate[i] = FromF32<T>(dg);
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
    if (AllAligned16(gate, up, h)) {
      SwiGluForwardKernel<T, true><<<GridFor(std::max<int64_t>(n / kPack, n % kPack)), 256, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), n, static_cast<T*>(h));
    } else {
      SwiGluForwardKernel<T, false><<<GridFor(n), 256, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), n, static_cast<T*>(h));
    }
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
    if (AllAligned16(dh, gate, up, dgate, dup)) {
      SwiGluBackwardKernel<T, true><<<GridFor(std::max<int64_t>(n / kPack, n % kPack)), 256, 0, stream>>>(
          static_cast<const T*>(dh), static_cast<const T*>(gate), static_cast<const T*>(up), n,
          static_cast<T*>(dgate), static_cast<T*>(dup));
    } else {
      SwiGluBackwardKernel<T, false><<<GridFor(n), 256, 0, stream>>>(
          static_cast<const T*>(dh), static_cast<const T*>(gate), static_cast<const T*>(up), n,
          static_cast<T*>(dgate), static_cast<T*>(dup));
    }
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
