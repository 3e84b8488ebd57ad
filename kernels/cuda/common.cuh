// Device-side helpers shared by the .cu files of kernels/cuda: fp32
// load/store of f32 and bf16 elements, warp and block reductions, and the
// dtype switch that turns a Float tag into a template argument. Included
// only by .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/types.h"

namespace baton::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ToF32(float x) { return x; }
__device__ __forceinline__ float ToF32(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T FromF32(float x);
template <> __device__ __forceinline__ float FromF32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 FromF32<bf16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `scratch` holds 32 values; reusable after return.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  return WarpSum(v);
}

// Max over the block; every thread gets it. `scratch` holds 32 floats.
__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpMax(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return WarpMax(v);
}

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Eight elements moved as 16-byte (bf16) or 2 × 16-byte (f32) loads and
// stores: memory-bound kernels reach ~1.7 TB/s on H100 with 2-byte scalar
// accesses and ~3 TB/s with these. Callers take the packed path only when
// every pointer is 16-byte aligned (AllAligned16), handling the n % 8 tail
// element by element.
constexpr int kPack = 8;
template <typename T>
struct alignas(16) Pack {
  T v[kPack];
};
template <typename T>
__device__ __forceinline__ Pack<T> LoadPack(const T* p, int64_t k) {
  return reinterpret_cast<const Pack<T>*>(p)[k];
}
template <typename T>
__device__ __forceinline__ void StorePack(T* p, int64_t k, const Pack<T>& x) {
  reinterpret_cast<Pack<T>*>(p)[k] = x;
}
inline bool AllAligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
template <typename... P>
bool AllAligned16(const void* p, P... rest) {
  return AllAligned16(p) && AllAligned16(rest...);
}

// Calls f(float{}) or f(bf16{}) for the tag.
template <typename F>
void DispatchFloat(Float t, F&& f) {
  if (t == Float::kF32) {
    f(float{});
  } else {
    f(bf16{});
  }
}

}  // namespace baton::cuda
