// Fused cross-entropy kernel and launcher (see cross_entropy.h). One block
// per row; when v % 8 == 0 and the pointers are 16-byte aligned, threads
// read and write eight logits at a time (common.cuh Pack), folding each
// pack into the online softmax with one rescale.
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy.h"

namespace baton::cuda {
namespace {

constexpr int kThreads = 512;

// Merge two online-softmax states (m, s): s is Σ exp(x − m).
__device__ __forceinline__ void Merge(float& m, float& s, float m2, float s2) {
  const float mx = fmaxf(m, m2);
  if (mx == -INFINITY) return;  // both empty
  s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
  m = mx;
}

template <typename T, bool kPacked>
__global__ void __launch_bounds__(kThreads) CrossEntropyKernel(
    const T* logits, const int32_t* __restrict__ targets, int64_t v, float* __restrict__ losses,
    T* dlogits, float grad_scale) {
  __shared__ float sm_m[32], sm_s[32];
  __shared__ float sh_target_logit;
  const int64_t r = blockIdx.x;
  const T* l = logits + r * v;
  const int32_t target = targets[r];
  if (target < 0 || target >= v) {  // ignored; out of range poisons the loss
    if (threadIdx.x == 0) losses[r] = target < 0 ? 0.f : NAN;
    if (dlogits != nullptr)
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) dlogits[r * v + j] = FromF32<T>(0.f);
    return;
  }
  float m = -INFINITY, s = 0.f;
  if constexpr (kPacked) {
    for (int64_t k = threadIdx.x; k < v / kPack; k += blockDim.x) {
      const Pack<T> p = LoadPack(l, k);
      float x[kPack];
      float pm = -INFINITY;
#pragma unroll
      for (int e = 0; e < kPack; ++e) {
        x[e] = ToF32(p.v[e]);
        pm = fmaxf(pm, x[e]);
      }
      if (pm > m) {
        s = m == -INFINITY ? 0.f : s * __expf(m - pm);
        m = pm;
      }
#pragma unroll
      for (int e = 0; e < kPack; ++e) s += __expf(x[e] - m);
    }
  } else {
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
      const float x = ToF32(l[j]);
      if (x > m) {
        s = s * __expf(m - x) + 1.f;
        m = x;
      } else {
        s += __expf(x - m);
      }
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    Merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) {
    sm_m[warp] = m;
    sm_s[warp] = s;
  }
  if (threadIdx.x == 0) sh_target_logit = ToF32(l[target]);  // before dlogits (may alias) is written
  __syncthreads();
  m = lane < warps ? sm_m[lane] : -INFINITY;
  s = lane < warps ? sm_s[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    Merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  if (threadIdx.x == 0) losses[r] = m + logf(s) - sh_target_logit;
  if (dlogits == nullptr) return;
  const float k = grad_scale / s;
  T* d = dlogits + r * v;
  if constexpr (kPacked) {
    for (int64_t q = threadIdx.x; q < v / kPack; q += blockDim.x) {
      const Pack<T> p = LoadPack(l, q);
      Pack<T> o;
#pragma unroll
      for (int e = 0; e < kPack; ++e) {
        float g = __expf(ToF32(p.v[e]) - m) * k;
        if (q * kPack + e == target) g -= grad_scale;
        o.v[e] = FromF32<T>(g);
      }
      StorePack(d, q, o);
    }
  } else {
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
      float g = __expf(ToF32(l[j]) - m) * k;
      if (j == target) g -= grad_scale;
      d[j] = FromF32<T>(g);
    }
  }
}

}  // namespace

absl::Status SoftmaxCrossEntropy(Float t, const void* logits, const int32_t* targets, int64_t n,
                                 int64_t v, float* losses, void* dlogits, float grad_scale,
                                 cudaStream_t stream) {
  BATON_CUDA_SIZE_CHECK(n >= 0 && v > 0 && n < (int64_t{1} << 31));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    if (v % kPack == 0 && AllAligned16(logits) && (dlogits == nullptr || AllAligned16(dlogits))) {
      CrossEntropyKernel<T, true><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
          static_cast<const T*>(logits), targets, v, losses, static_cast<T*>(dlogits), grad_scale);
    } else {
      CrossEntropyKernel<T, false><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
          static_cast<const T*>(logits), targets, v, losses, static_cast<T*>(dlogits), grad_scale);
    }
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
