// RMSNorm kernels and launchers (see rms_norm.h). Each row is held by one
// warp: pass 1 sums x² (or dy·w·x), pass 2 writes; rows are short (≤ 16k),
// so the second read hits L1/L2. When c % 8 == 0 and every pointer is
// 16-byte aligned, lanes move eight elements per load (common.cuh Pack):
// with 2-byte loads the kernels ran at about half the memory bandwidth.
// The dw chunk sums are added by 8 threads per column (fixed order). The
// packed backward for c ≤ 2048 is one fused pass (dx, the residual's
// gradient, dw partials); wider rows take a dx kernel and a dw kernel.
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.h"
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
                                        int64_t n, int64_t c, const T* dres, T* dx) {
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
  const T* rr = dres != nullptr ? dres + row * c : nullptr;
  for (int64_t j = lane; j < c; j += 32) {
    float g = rs * ToF32(dyr[j]) * ToF32(w[j]) - coef * ToF32(xr[j]);
    if (rr != nullptr) g += ToF32(rr[j]);  // one rounding for the norm grad and the residual
    dxr[j] = FromF32<T>(g);
  }
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

template <typename T>
__global__ void RmsNormForwardPackedKernel(const T* __restrict__ x, const T* __restrict__ w,
                                           float eps, int64_t n, int64_t c, T* __restrict__ y,
                                           float* __restrict__ rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xr = x + row * c;
  const int64_t packs = c / kPack;
  float ss = 0.f;
  for (int64_t k = lane; k < packs; k += 32) {
    const Pack<T> p = LoadPack(xr, k);
#pragma unroll
    for (int e = 0; e < kPack; ++e) {
      const float v = ToF32(p.v[e]);
      ss += v * v;
    }
  }
  ss = WarpSum(ss);
  const float rs = rsqrtf(ss / static_cast<float>(c) + eps);
  if (lane == 0) rstd[row] = rs;
  T* yr = y + row * c;
  for (int64_t k = lane; k < packs; k += 32) {
    const Pack<T> p = LoadPack(xr, k), wp = LoadPack(w, k);
    Pack<T> o;
#pragma unroll
    for (int e = 0; e < kPack; ++e) o.v[e] = FromF32<T>((ToF32(p.v[e]) * rs) * ToF32(wp.v[e]));
    StorePack(yr, k, o);
  }
}

// dx for one pack of a row: rs·dy·w − coef·x, plus the residual's gradient
// (one rounding for both) when dres_row is non-null; shared by the packed
// dx kernel and the fused backward so both give the same bits.
template <typename T>
__device__ __forceinline__ void StoreNormGradPack(const Pack<T>& dp, const Pack<T>& xp, const Pack<T>& wp,
                                                  float rs, float coef, const T* dres_row, int64_t k,
                                                  T* dx_row) {
  float g[kPack];
#pragma unroll
  for (int e = 0; e < kPack; ++e) g[e] = rs * ToF32(dp.v[e]) * ToF32(wp.v[e]) - coef * ToF32(xp.v[e]);
  if (dres_row != nullptr) {
    const Pack<T> rp = LoadPack(dres_row, k);
#pragma unroll
    for (int e = 0; e < kPack; ++e) g[e] += ToF32(rp.v[e]);
  }
  Pack<T> o;
#pragma unroll
  for (int e = 0; e < kPack; ++e) o.v[e] = FromF32<T>(g[e]);
  StorePack(dx_row, k, o);
}

template <typename T>
__global__ void RmsNormBackwardDxPackedKernel(const T* __restrict__ dy, const T* __restrict__ x,
                                              const T* __restrict__ w, const float* __restrict__ rstd,
                                              int64_t n, int64_t c, const T* dres, T* dx) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* xr = x + row * c;
  const T* dyr = dy + row * c;
  const int64_t packs = c / kPack;
  float dot = 0.f;
  for (int64_t k = lane; k < packs; k += 32) {
    const Pack<T> xp = LoadPack(xr, k), dp = LoadPack(dyr, k), wp = LoadPack(w, k);
#pragma unroll
    for (int e = 0; e < kPack; ++e) dot += ToF32(dp.v[e]) * ToF32(wp.v[e]) * ToF32(xp.v[e]);
  }
  dot = WarpSum(dot);
  const float rs = rstd[row];
  const float coef = rs * rs * rs * dot / static_cast<float>(c);
  T* dxr = dx + row * c;
  const T* rr = dres != nullptr ? dres + row * c : nullptr;
  for (int64_t k = lane; k < packs; k += 32) {
    const Pack<T> xp = LoadPack(xr, k), dp = LoadPack(dyr, k), wp = LoadPack(w, k);
    StoreNormGradPack(dp, xp, wp, rs, coef, rr, k, dxr);
  }
}

// partial (chunks, c) with chunks of kRowsPerPackedChunk rows; one thread
// per 8 columns.
constexpr int kRowsPerPackedChunk = 32;
template <typename T>
__global__ void RmsNormDwPartialPackedKernel(const T* __restrict__ dy, const T* __restrict__ x,
                                             const float* __restrict__ rstd, int64_t n, int64_t c,
                                             float* __restrict__ partial) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (k >= c / kPack) return;
  const int64_t r0 = chunk * kRowsPerPackedChunk;
  const int64_t r1 = min(n, r0 + kRowsPerPackedChunk);
  float acc[kPack] = {};
  for (int64_t r = r0; r < r1; ++r) {
    const Pack<T> dp = LoadPack(dy + r * c, k), xp = LoadPack(x + r * c, k);
    const float rs = rstd[r];
#pragma unroll
    for (int e = 0; e < kPack; ++e) acc[e] += ToF32(dp.v[e]) * (ToF32(xp.v[e]) * rs);
  }
  float* out = partial + chunk * c + k * kPack;
#pragma unroll
  for (int e = 0; e < kPack; ++e) out[e] = acc[e];
}

// One pass for the whole backward when a row fits a lane's registers
// (c ≤ 256·NP): a block of 8 warps takes kRowsPerPackedChunk rows (4 per
// warp), writes dx (+ dres) and keeps each lane's dw partial sums in
// registers; the 8 warps then add theirs into shared memory in warp order
// and the block writes its chunk row of `partial`. The two-kernel path reads
// dy and x twice from memory; this reads them once (~⅓ fewer bytes).
constexpr int kFusedWarps = 8;
constexpr int kFusedRowsPerWarp = kRowsPerPackedChunk / kFusedWarps;
template <typename T, int NP>
__global__ void __launch_bounds__(32 * kFusedWarps)
    RmsNormBackwardFusedKernel(const T* __restrict__ dy, const T* __restrict__ x,
                               const T* __restrict__ w, const float* __restrict__ rstd, int64_t n,
                               int64_t c, const T* dres, T* dx, float* __restrict__ partial) {
  extern __shared__ float red[];  // (c)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t packs = c / kPack;
  float acc[NP][kPack];
#pragma unroll
  for (int j = 0; j < NP; ++j)
#pragma unroll
    for (int e = 0; e < kPack; ++e) acc[j][e] = 0.f;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerPackedChunk + warp * kFusedRowsPerWarp;
  for (int i = 0; i < kFusedRowsPerWarp; ++i) {
    const int64_t row = row0 + i;
    if (row >= n) break;
    const T* xr = x + row * c;
    const T* dyr = dy + row * c;
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < NP; ++j) {
      const int64_t k = lane + 32 * j;
      if (k < packs) {
        const Pack<T> xp = LoadPack(xr, k), dp = LoadPack(dyr, k), wp = LoadPack(w, k);
#pragma unroll
        for (int e = 0; e < kPack; ++e) dot += ToF32(dp.v[e]) * ToF32(wp.v[e]) * ToF32(xp.v[e]);
      }
    }
    dot = WarpSum(dot);
    const float rs = rstd[row];
    const float coef = rs * rs * rs * dot / static_cast<float>(c);
    T* dxr = dx + row * c;
    const T* rr = dres != nullptr ? dres + row * c : nullptr;
#pragma unroll
    for (int j = 0; j < NP; ++j) {
      const int64_t k = lane + 32 * j;
      if (k < packs) {
        const Pack<T> xp = LoadPack(xr, k), dp = LoadPack(dyr, k), wp = LoadPack(w, k);
        StoreNormGradPack(dp, xp, wp, rs, coef, rr, k, dxr);
#pragma unroll
        for (int e = 0; e < kPack; ++e) acc[j][e] += ToF32(dp.v[e]) * (ToF32(xp.v[e]) * rs);
      }
    }
  }
  for (int wi = 0; wi < kFusedWarps; ++wi) {  // warp order: deterministic
    if (warp == wi) {
#pragma unroll
      for (int j = 0; j < NP; ++j) {
        const int64_t k = lane + 32 * j;
        if (k < packs)
#pragma unroll
          for (int e = 0; e < kPack; ++e) {
            float& r = red[k * kPack + e];
            r = wi == 0 ? acc[j][e] : r + acc[j][e];
          }
      }
    }
    __syncthreads();
  }
  float* out = partial + static_cast<int64_t>(blockIdx.x) * c;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) out[j] = red[j];
}

// dw[j] += Σ_k partial[k, j]: block (32 columns, 8 chunk lanes); lane ty
// sums chunks ty, ty+8, ..., then the 8 lane sums are added in order.
template <typename TW>
__global__ void SumChunksParallelKernel(const float* __restrict__ partial, int64_t chunks,
                                        int64_t c, TW* __restrict__ dw) {
  __shared__ float sums[8][33];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float acc = 0.f;
  if (j < c)
    for (int64_t k = threadIdx.y; k < chunks; k += 8) acc += partial[k * c + j];
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || j >= c) return;
  float total = 0.f;
#pragma unroll
  for (int l = 0; l < 8; ++l) total += sums[l][threadIdx.x];
  dw[j] = FromF32<TW>(ToF32(dw[j]) + total);
}

// sum = a + b (rounded to T, as the Add kernel does) and y = RMSNorm(sum)
// in one pass over the rows: the residual add before a norm without a
// separate read of the sum. Pass 2 recomputes a + b (the same bits) rather
// than reading back the stored sum. The norm's arithmetic and summation
// order are RmsNormForwardPackedKernel's, so RmsNorm of the stored sum (what
// selective recompute runs) gives the same bits.
template <typename T>
__global__ void AddRmsNormForwardPackedKernel(const T* __restrict__ a, const T* __restrict__ b,
                                              const T* __restrict__ w, float eps, int64_t n, int64_t c,
                                              T* sum, T* __restrict__ y, float* __restrict__ rstd) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;
  const T* ar = a + row * c;
  const T* br = b + row * c;
  T* sr = sum + row * c;
  const int64_t packs = c / kPack;
  float ss = 0.f;
  for (int64_t k = lane; k < packs; k += 32) {
    const Pack<T> pa = LoadPack(ar, k), pb = LoadPack(br, k);
    Pack<T> ps;
#pragma unroll
    for (int e = 0; e < kPack; ++e) {
      ps.v[e] = FromF32<T>(ToF32(pa.v[e]) + ToF32(pb.v[e]));
      const float v = ToF32(ps.v[e]);
      ss += v * v;
    }
    StorePack(sr, k, ps);
  }
  ss = WarpSum(ss);
  const float rs = rsqrtf(ss / static_cast<float>(c) + eps);
  if (lane == 0) rstd[row] = rs;
  T* yr = y + row * c;
  for (int64_t k = lane; k < packs; k += 32) {
    const Pack<T> pa = LoadPack(ar, k), pb = LoadPack(br, k), wp = LoadPack(w, k);
    Pack<T> o;
#pragma unroll
    for (int e = 0; e < kPack; ++e) {
      const float v = ToF32(FromF32<T>(ToF32(pa.v[e]) + ToF32(pb.v[e])));
      o.v[e] = FromF32<T>((v * rs) * ToF32(wp.v[e]));
    }
    StorePack(yr, k, o);
  }
}

}  // namespace

absl::Status RmsNormForward(Float t, const void* x, const void* w, float eps, int64_t n,
                            int64_t c, void* y, float* rstd, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0);
  if (n == 0) return absl::OkStatus();
  const dim3 grid(static_cast<unsigned>(CeilDiv(n, kWarpsPerBlock)));
  const bool packed = c % kPack == 0 && AllAligned16(x, w, y);
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    if (packed) {
      RmsNormForwardPackedKernel<T><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(w), eps, n, c, static_cast<T*>(y), rstd);
    } else {
      RmsNormForwardKernel<T><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(w), eps, n, c, static_cast<T*>(y), rstd);
    }
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status AddRmsNormForward(Float t, const void* a, const void* b, const void* w, float eps, int64_t n,
                               int64_t c, void* sum, void* y, float* rstd, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0);
  if (n == 0) return absl::OkStatus();
  if (c % kPack != 0 || !AllAligned16(a, b, w, sum, y)) {  // rare shapes: the two kernels
    BATON_RETURN_IF_ERROR(Add(t, a, b, n * c, sum, stream));
    return RmsNormForward(t, sum, w, eps, n, c, y, rstd, stream);
  }
  const dim3 grid(static_cast<unsigned>(CeilDiv(n, kWarpsPerBlock)));
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    AddRmsNormForwardPackedKernel<T><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), static_cast<const T*>(w), eps, n, c,
        static_cast<T*>(sum), static_cast<T*>(y), rstd);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status RmsNormBackward(Float t, Float tw, const void* dy, const void* x, const void* w,
                             const float* rstd, int64_t n, int64_t c, const void* dres, void* dx,
                             void* dw, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0);
  if (n == 0) return absl::OkStatus();
  const bool packed = c % kPack == 0 && AllAligned16(dy, x, w, dx) && (dres == nullptr || AllAligned16(dres));
  const int64_t chunks = CeilDiv(n, packed ? kRowsPerPackedChunk : kRowsPerChunk);
  BATON_CUDA_SIZE_CHECK(chunks < 65536);  // grid.y
  float* partial = nullptr;  // (chunks, c) fp32, from the stream-ordered pool
  BATON_CHECK_CUDA(cudaMallocAsync(&partial, sizeof(float) * chunks * c, stream));
  const int lane_packs = static_cast<int>(CeilDiv(c / kPack, 32));  // packs a lane holds
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    const unsigned rows_grid = static_cast<unsigned>(CeilDiv(n, kWarpsPerBlock));
    auto fused = [&](auto np) {
      constexpr int NP = decltype(np)::value;
      RmsNormBackwardFusedKernel<T, NP>
          <<<static_cast<unsigned>(chunks), 32 * kFusedWarps, sizeof(float) * c, stream>>>(
              static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd, n,
              c, static_cast<const T*>(dres), static_cast<T*>(dx), partial);
    };
    if (packed && lane_packs <= 8) {  // c ≤ 2048: registers hold a lane's dw partials
      switch (lane_packs) {
        case 1: fused(std::integral_constant<int, 1>{}); break;
        case 2: fused(std::integral_constant<int, 2>{}); break;
        case 3: fused(std::integral_constant<int, 3>{}); break;
        case 4: fused(std::integral_constant<int, 4>{}); break;
        default: fused(std::integral_constant<int, 8>{}); break;
      }
    } else if (packed) {
      RmsNormBackwardDxPackedKernel<T><<<rows_grid, 32 * kWarpsPerBlock, 0, stream>>>(
          static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd, n, c,
          static_cast<const T*>(dres), static_cast<T*>(dx));
      const dim3 grid(static_cast<unsigned>(CeilDiv(c / kPack, 128)), static_cast<unsigned>(chunks));
      RmsNormDwPartialPackedKernel<T><<<grid, 128, 0, stream>>>(
          static_cast<const T*>(dy), static_cast<const T*>(x), rstd, n, c, partial);
    } else {
      RmsNormBackwardDxKernel<T><<<rows_grid, 32 * kWarpsPerBlock, 0, stream>>>(
          static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd, n, c,
          static_cast<const T*>(dres), static_cast<T*>(dx));
      const dim3 grid(static_cast<unsigned>(CeilDiv(c, 128)), static_cast<unsigned>(chunks));
      RmsNormDwPartialKernel<T><<<grid, 128, 0, stream>>>(static_cast<const T*>(dy),
                                                          static_cast<const T*>(x), rstd, n, c,
                                                          partial);
    }
  });
  DispatchFloat(tw, [&](auto tag) {
    using TW = decltype(tag);
    SumChunksParallelKernel<TW><<<static_cast<unsigned>(CeilDiv(c, 32)), dim3(32, 8), 0, stream>>>(
        partial, chunks, c, static_cast<TW*>(dw));
  });
  BATON_CUDA_LAUNCH_CHECK();
  BATON_CHECK_CUDA(cudaFreeAsync(partial, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
