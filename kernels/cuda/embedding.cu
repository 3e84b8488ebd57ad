// Embedding kernels and launchers (see embedding.h).
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.h"

namespace baton::cuda {
namespace {

// One block row per token; threads stride over the columns.
template <typename T>
__global__ void EmbeddingForwardKernel(const int32_t* __restrict__ tokens,
                                       const T* __restrict__ table, int64_t vocab_start,
                                       int64_t v_local, int64_t c, T* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const int64_t row = static_cast<int64_t>(tokens[r]) - vocab_start;
  T* o = out + r * c;
  if (row >= 0 && row < v_local) {
    const T* src = table + row * c;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) o[j] = src[j];
  } else {
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) o[j] = FromF32<T>(0.f);
  }
}

template <typename TD, typename TT>
__global__ void EmbeddingBackwardKernel(const TD* __restrict__ dout,
                                        const int32_t* __restrict__ tokens, int64_t vocab_start,
                                        int64_t v_local, int64_t n, int64_t c,
                                        TT* __restrict__ dtable) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= c) return;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t row = static_cast<int64_t>(tokens[r]) - vocab_start;
    if (row < 0 || row >= v_local) continue;
    TT* t = dtable + row * c + j;
    *t = FromF32<TT>(ToF32(*t) + ToF32(dout[r * c + j]));
  }
}

}  // namespace

absl::Status EmbeddingForward(Float t, const int32_t* tokens, const void* table,
                              int64_t vocab_start, int64_t v_local, int64_t n, int64_t c,
                              void* out, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0 && v_local >= 0 && n < (int64_t{1} << 31));
  if (n == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    EmbeddingForwardKernel<T><<<static_cast<unsigned>(n), 256, 0, stream>>>(
        tokens, static_cast<const T*>(table), vocab_start, v_local, c, static_cast<T*>(out));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status EmbeddingBackward(Float t_dout, Float t_table, const void* dout,
                               const int32_t* tokens, int64_t vocab_start, int64_t v_local,
                               int64_t n, int64_t c, void* dtable, cudaStream_t stream) {
  BATON_CHECK(n >= 0 && c > 0 && v_local >= 0);
  if (n == 0) return absl::OkStatus();
  const unsigned grid = static_cast<unsigned>(CeilDiv(c, 64));
  DispatchFloat(t_dout, [&](auto dtag) {
    DispatchFloat(t_table, [&](auto ttag) {
      using TD = decltype(dtag);
      using TT = decltype(ttag);
      EmbeddingBackwardKernel<TD, TT><<<grid, 64, 0, stream>>>(
          static_cast<const TD*>(dout), tokens, vocab_start, v_local, n, c,
          static_cast<TT*>(dtable));
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
