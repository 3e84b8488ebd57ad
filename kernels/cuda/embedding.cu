// Embedding kernels and launchers (see embedding.h).
// The backward is a scatter-add of n rows into the table. To stay
// deterministic without a serial loop over all rows, the (token, row)
// pairs are sorted by token with a stable radix sort (rows of one token
// keep their order), then one block per distinct token sums its rows in
// that order: the same additions, in the same order, as a loop over rows.
// Columns are spread over blocks and rows loaded ahead, so a very frequent
// token (a long run) does not serialise the step.
#include <cub/device/device_radix_sort.cuh>

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

__global__ void IotaKernel(int32_t* __restrict__ out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<int32_t>(i);
}

// Block (b, y) handles sorted position b if it starts a run of equal
// tokens, one column per thread (columns y·blockDim.x + threadIdx.x): it
// adds the run's rows in order. A run can be long (byte-level text: the
// space is ~16 % of all tokens, thousands of rows), so its end is found by
// galloping search (the tokens are sorted) and each thread loads kAhead rows
// before adding them in order: the loads overlap, the additions (and so
// the bits) are those of the row loop.
template <typename TD, typename TT>
__global__ void EmbeddingBackwardSortedKernel(const TD* __restrict__ dout, const int32_t* __restrict__ sorted_tokens,
                                              const int32_t* __restrict__ sorted_rows, int64_t vocab_start,
                                              int64_t v_local, int64_t n, int64_t c, TT* __restrict__ dtable) {
  constexpr int kAhead = 16;
  const int64_t i = blockIdx.x;
  const int32_t token = sorted_tokens[i];
  if (i > 0 && sorted_tokens[i - 1] == token) return;  // not the start of a run
  const int64_t row = static_cast<int64_t>(token) - vocab_start;
  if (row < 0 || row >= v_local) return;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= c) return;
  // Galloping, then bisection: a run of one or two rows costs a load or
  // two, a run of thousands a few dozen. Positions below lo hold the token;
  // hi is n or holds a larger one.
  int64_t lo = i + 1, hi = i + 1, stride = 1;
  while (hi < n && sorted_tokens[hi] == token) {
    lo = hi + 1;
    stride *= 2;
    hi = i + stride;
  }
  if (hi > n) hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sorted_tokens[mid] == token) lo = mid + 1; else hi = mid;
  }
  const int64_t end = lo;
  TT* t = dtable + row * c + j;
  TT acc = *t;
  int64_t k = i;
  for (; k + kAhead <= end; k += kAhead) {
    float v[kAhead];
#pragma unroll
    for (int u = 0; u < kAhead; ++u) v[u] = ToF32(dout[static_cast<int64_t>(sorted_rows[k + u]) * c + j]);
#pragma unroll
    for (int u = 0; u < kAhead; ++u) acc = FromF32<TT>(ToF32(acc) + v[u]);
  }
  for (; k < end; ++k) acc = FromF32<TT>(ToF32(acc) + ToF32(dout[static_cast<int64_t>(sorted_rows[k]) * c + j]));
  *t = acc;
}

}  // namespace

absl::Status EmbeddingForward(Float t, const int32_t* tokens, const void* table,
                              int64_t vocab_start, int64_t v_local, int64_t n, int64_t c,
                              void* out, cudaStream_t stream) {
  BATON_CUDA_SIZE_CHECK(n >= 0 && c > 0 && v_local >= 0 && n < (int64_t{1} << 31));
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
  BATON_CUDA_SIZE_CHECK(n >= 0 && c > 0 && v_local >= 0 && n < (int64_t{1} << 31));
  if (n == 0) return absl::OkStatus();
  // Scratch: rows in, sorted tokens and rows out, the sort's temporary storage (stream-ordered).
  size_t temp_bytes = 0;
  BATON_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, static_cast<const int32_t*>(nullptr),
                                                   static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                   static_cast<int32_t*>(nullptr), static_cast<int>(n), 0, 32, stream));
  const size_t ids = static_cast<size_t>(n) * sizeof(int32_t);
  char* scratch = nullptr;
  BATON_CHECK_CUDA(cudaMallocAsync(&scratch, 3 * ids + temp_bytes, stream));
  int32_t* rows_in = reinterpret_cast<int32_t*>(scratch);
  int32_t* tokens_out = reinterpret_cast<int32_t*>(scratch + ids);
  int32_t* rows_out = reinterpret_cast<int32_t*>(scratch + 2 * ids);
  void* temp = scratch + 3 * ids;
  IotaKernel<<<static_cast<unsigned>(CeilDiv(n, 256)), 256, 0, stream>>>(rows_in, n);
  BATON_CUDA_LAUNCH_CHECK();
  BATON_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, tokens_out, rows_in, rows_out,
                                                   static_cast<int>(n), 0, 32, stream));
  DispatchFloat(t_dout, [&](auto dtag) {
    DispatchFloat(t_table, [&](auto ttag) {
      using TD = decltype(dtag);
      using TT = decltype(ttag);
      const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(CeilDiv(c, 256)));
      EmbeddingBackwardSortedKernel<TD, TT><<<grid, 256, 0, stream>>>(
          static_cast<const TD*>(dout), tokens_out, rows_out, vocab_start, v_local, n, c,
          static_cast<TT*>(dtable));
    });
  });
  BATON_CUDA_LAUNCH_CHECK();
  BATON_CHECK_CUDA(cudaFreeAsync(scratch, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
