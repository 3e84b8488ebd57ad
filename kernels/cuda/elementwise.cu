// Elementwise kernels, reductions and their launchers (see elementwise.h).
#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.h"

namespace baton::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kReduceBlocks = 528;  // fixed: 4 per H100 multiprocessor; fixes the sum order
constexpr int kRowsPerChunk = 64;

#define BATON_GRID_STRIDE(i, n)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Packed bodies (common.cuh): every pointer 16-byte aligned; the n % 8
// tail goes element by element. Aliasing (out == a) is allowed: each
// element is read before it is written, by the same thread.
template <typename T>
__global__ void AddKernel(const T* a, const T* b, int64_t n, T* out) {
  const int64_t packs = n / kPack;
  BATON_GRID_STRIDE(k, packs) {
    const Pack<T> x = LoadPack(a, k), y = LoadPack(b, k);
    Pack<T> r;
#pragma unroll
    for (int e = 0; e < kPack; ++e) r.v[e] = FromF32<T>(ToF32(x.v[e]) + ToF32(y.v[e]));
    StorePack(out, k, r);
  }
  BATON_GRID_STRIDE(i, n - packs * kPack) {
    const int64_t j = packs * kPack + i;
    out[j] = FromF32<T>(ToF32(a[j]) + ToF32(b[j]));
  }
}
template <typename T>
__global__ void AddScalarKernel(const T* a, const T* b, int64_t n, T* out) {
  BATON_GRID_STRIDE(i, n) out[i] = FromF32<T>(ToF32(a[i]) + ToF32(b[i]));
}
template <typename T>
__global__ void ScaleKernel(T* x, int64_t n, float s) {
  const int64_t packs = n / kPack;
  BATON_GRID_STRIDE(k, packs) {
    Pack<T> r = LoadPack(x, k);
#pragma unroll
    for (int e = 0; e < kPack; ++e) r.v[e] = FromF32<T>(ToF32(r.v[e]) * s);
    StorePack(x, k, r);
  }
  BATON_GRID_STRIDE(i, n - packs * kPack) {
    const int64_t j = packs * kPack + i;
    x[j] = FromF32<T>(ToF32(x[j]) * s);
  }
}
template <typename T>
__global__ void ScaleScalarKernel(T* x, int64_t n, float s) {
  BATON_GRID_STRIDE(i, n) x[i] = FromF32<T>(ToF32(x[i]) * s);
}
template <typename TI, typename TO>
__global__ void ConvertKernel(const TI* in, int64_t n, TO* out) {
  const int64_t packs = n / kPack;
  BATON_GRID_STRIDE(k, packs) {
    const Pack<TI> x = LoadPack(in, k);
    Pack<TO> r;
#pragma unroll
    for (int e = 0; e < kPack; ++e) r.v[e] = FromF32<TO>(ToF32(x.v[e]));
    StorePack(out, k, r);
  }
  BATON_GRID_STRIDE(i, n - packs * kPack) {
    const int64_t j = packs * kPack + i;
    out[j] = FromF32<TO>(ToF32(in[j]));
  }
}
template <typename TI, typename TO>
__global__ void ConvertScalarKernel(const TI* in, int64_t n, TO* out) {
  BATON_GRID_STRIDE(i, n) out[i] = FromF32<TO>(ToF32(in[i]));
}
// The sum order depends only on n (fixed grid, fixed split into packs and
// tail), so a reduction gives the same bits on every run.
template <typename T, bool kSquare, bool kPacked>
__global__ void SumPartialKernel(const T* __restrict__ x, int64_t n, double* __restrict__ partial) {
  __shared__ double scratch[32];
  double acc = 0.0;
  int64_t done = 0;
  if constexpr (kPacked) {
    const int64_t packs = n / kPack;
    BATON_GRID_STRIDE(k, packs) {
      const Pack<T> p = LoadPack(x, k);
#pragma unroll
      for (int e = 0; e < kPack; ++e) {
        const double v = ToF32(p.v[e]);
        acc += kSquare ? v * v : v;
      }
    }
    done = packs * kPack;
  }
  BATON_GRID_STRIDE(i, n - done) {
    const double v = ToF32(x[done + i]);
    acc += kSquare ? v * v : v;
  }
  acc = BlockSum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}
__global__ void SumFinalKernel(const double* __restrict__ partial, int count,
                               double* __restrict__ out) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = BlockSum(acc, scratch);
  if (threadIdx.x == 0) *out = acc;
}
template <typename T>
__global__ void ColumnPartialKernel(const T* __restrict__ x, int64_t n, int64_t c,
                                    float* __restrict__ partial) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= c) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRowsPerChunk;
  const int64_t r1 = min(n, r0 + kRowsPerChunk);
  float acc = 0.f;
  for (int64_t r = r0; r < r1; ++r) acc += ToF32(x[r * c + j]);
  partial[blockIdx.y * c + j] = acc;
}
template <typename TO>
__global__ void ColumnFinalKernel(const float* __restrict__ partial, int64_t chunks, int64_t c,
                                  TO* __restrict__ out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float acc = 0.f;
  for (int64_t k = 0; k < chunks; ++k) acc += partial[k * c + j];
  out[j] = FromF32<TO>(ToF32(out[j]) + acc);
}

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>(CeilDiv(n, kThreads), 1, 65536));
}
// Threads for a packed kernel: one per pack (at least one for the tail).
unsigned PackedGridFor(int64_t n) { return GridFor(std::max<int64_t>(n / kPack, n % kPack)); }

template <bool kSquare>
absl::StatusOr<double> Reduce(Float t, const void* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return 0.0;
  double* partial = nullptr;  // (kReduceBlocks + 1): partials, then the result
  BATON_CHECK_CUDA(cudaMallocAsync(&partial, sizeof(double) * (kReduceBlocks + 1), stream));
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    if (AllAligned16(x)) {
      SumPartialKernel<T, kSquare, true><<<kReduceBlocks, kThreads, 0, stream>>>(
          static_cast<const T*>(x), n, partial);
    } else {
      SumPartialKernel<T, kSquare, false><<<kReduceBlocks, kThreads, 0, stream>>>(
          static_cast<const T*>(x), n, partial);
    }
  });
  SumFinalKernel<<<1, kThreads, 0, stream>>>(partial, kReduceBlocks, partial + kReduceBlocks);
  BATON_CUDA_LAUNCH_CHECK();
  double result = 0.0;
  BATON_CHECK_CUDA(cudaMemcpyAsync(&result, partial + kReduceBlocks, sizeof(double),
                                   cudaMemcpyDeviceToHost, stream));
  BATON_CHECK_CUDA(cudaFreeAsync(partial, stream));
  BATON_CHECK_CUDA(cudaStreamSynchronize(stream));
  return result;
}

}  // namespace

absl::Status Add(Float t, const void* a, const void* b, int64_t n, void* out,
                 cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    if (AllAligned16(a, b, out)) {
      AddKernel<T><<<PackedGridFor(n), kThreads, 0, stream>>>(
          static_cast<const T*>(a), static_cast<const T*>(b), n, static_cast<T*>(out));
    } else {
      AddScalarKernel<T><<<GridFor(n), kThreads, 0, stream>>>(
          static_cast<const T*>(a), static_cast<const T*>(b), n, static_cast<T*>(out));
    }
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status AddInPlace(Float t, void* y, const void* x, int64_t n, cudaStream_t stream) {
  return Add(t, y, x, n, y, stream);
}

absl::Status Scale(Float t, void* x, int64_t n, float s, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    if (AllAligned16(x)) {
      ScaleKernel<T><<<PackedGridFor(n), kThreads, 0, stream>>>(static_cast<T*>(x), n, s);
    } else {
      ScaleScalarKernel<T><<<GridFor(n), kThreads, 0, stream>>>(static_cast<T*>(x), n, s);
    }
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status Convert(Float t_in, const void* in, int64_t n, Float t_out, void* out,
                     cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t_in, [&](auto itag) {
    DispatchFloat(t_out, [&](auto otag) {
      using TI = decltype(itag);
      using TO = decltype(otag);
      if (AllAligned16(in, out)) {
        ConvertKernel<TI, TO><<<PackedGridFor(n), kThreads, 0, stream>>>(
            static_cast<const TI*>(in), n, static_cast<TO*>(out));
      } else {
        ConvertScalarKernel<TI, TO><<<GridFor(n), kThreads, 0, stream>>>(
            static_cast<const TI*>(in), n, static_cast<TO*>(out));
      }
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::StatusOr<double> SumSquares(Float t, const void* x, int64_t n, cudaStream_t stream) {
  return Reduce<true>(t, x, n, stream);
}

absl::StatusOr<double> Sum(Float t, const void* x, int64_t n, cudaStream_t stream) {
  return Reduce<false>(t, x, n, stream);
}

absl::Status AccumulateColumnSums(Float t, const void* x, int64_t n, int64_t c, Float t_out,
                                  void* out, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c >= 0);
  if (n == 0 || c == 0) return absl::OkStatus();
  const int64_t chunks = CeilDiv(n, kRowsPerChunk);
  BATON_CUDA_SIZE_CHECK(chunks < 65536);
  float* partial = nullptr;  // (chunks, c)
  BATON_CHECK_CUDA(cudaMallocAsync(&partial, sizeof(float) * chunks * c, stream));
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(static_cast<unsigned>(CeilDiv(c, 128)), static_cast<unsigned>(chunks));
    ColumnPartialKernel<T><<<grid, 128, 0, stream>>>(static_cast<const T*>(x), n, c, partial);
  });
  DispatchFloat(t_out, [&](auto tag) {
    using TO = decltype(tag);
    ColumnFinalKernel<TO><<<static_cast<unsigned>(CeilDiv(c, 256)), 256, 0, stream>>>(
        partial, chunks, c, static_cast<TO*>(out));
  });
  BATON_CUDA_LAUNCH_CHECK();
  BATON_CHECK_CUDA(cudaFreeAsync(partial, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
