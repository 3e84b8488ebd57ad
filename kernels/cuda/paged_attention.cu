// Paged attention, KV write, RoPE at positions and the greedy argmax on the
// GPU (see paged_attention.h).
#include <cfloat>
#include <cmath>

#include "absl/strings/str_cat.h"

#include "kernels/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/paged_attention.h"

namespace baton::cuda {
namespace {

// Warps per block of the attention kernel: 8 (not 4) keeps more K/V loads in
// flight per (row, head), which a decode at small batch needs (a batch of 1
// of a 16-head model is only 16 blocks).
constexpr int kWarps = 8;
constexpr int kMaxPerLane = 8;    // head dim up to 32 · 8 = 256

// Block (row, head): warp w takes positions w, w + kWarps, ...; lane l holds
// elements l, l + 32, ... of q and of its running output.
template <typename T>
__global__ void PagedAttentionKernel(const T* __restrict__ q, const T* __restrict__ k_pool,
                                     const T* __restrict__ v_pool, cpu::PagedRows r, int64_t h, int64_t kv,
                                     int64_t d, float scale, T* __restrict__ out) {
  const int64_t row = blockIdx.x / h, hh = blockIdx.x % h, kh = hh / (h / kv);
  const int32_t* table = r.block_tables + static_cast<int64_t>(r.row_seq[row]) * r.max_blocks;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t len = static_cast<int64_t>(r.row_pos[row]) + 1;  // 0 for a padding row
  const int per_lane = static_cast<int>((d + 31) / 32);
  float qv[kMaxPerLane], acc[kMaxPerLane];
  const T* qr = q + (row * h + hh) * d;
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    const int64_t c = lane + 32 * j;
    qv[j] = (j < per_lane && c < d) ? ToF32(qr[c]) : 0.f;
    acc[j] = 0.f;
  }
  float m = -FLT_MAX, l = 0.f;  // running max and sum of this warp
  for (int64_t t = warp; t < len; t += kWarps) {
    const int64_t at = ((static_cast<int64_t>(table[t / r.block_size]) * r.block_size + t % r.block_size) * kv + kh) * d;
    // K and V loads issued together, before the reduction that waits on K.
    float kf[kMaxPerLane], vf[kMaxPerLane];
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) {
      const int64_t c = lane + 32 * j;
      const bool in = j < per_lane && c < d;
      kf[j] = in ? ToF32(k_pool[at + c]) : 0.f;
      vf[j] = in ? ToF32(v_pool[at + c]) : 0.f;
    }
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) s += qv[j] * kf[j];
    s = WarpSum(s) * scale;
    const float m_new = fmaxf(m, s);
    const float correction = __expf(m - m_new), p = __expf(s - m_new);
    l = l * correction + p;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) acc[j] = acc[j] * correction + p * vf[j];
    m = m_new;
  }
  // Merge the warps: max, rescaled sums and outputs through shared memory.
  __shared__ float sm[kWarps], sl[kWarps];
  __shared__ float sacc[kWarps][32 * kMaxPerLane];
  if (lane == 0) sm[warp] = m, sl[warp] = l;
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) sacc[warp][lane + 32 * j] = acc[j];
  __syncthreads();
  if (warp != 0) return;
  float m_all = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, sm[w]);
  float l_all = 0.f, w_scale[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    w_scale[w] = sl[w] > 0.f ? __expf(sm[w] - m_all) : 0.f;  // a warp with no position adds nothing
    l_all += sl[w] * w_scale[w];
  }
  T* o = out + (row * h + hh) * d;
  for (int j = 0; j < per_lane; ++j) {
    const int64_t c = lane + 32 * j;
    if (c >= d) break;
    float v = 0.f;
    for (int w = 0; w < kWarps; ++w) v += sacc[w][lane + 32 * j] * w_scale[w];
    o[c] = FromF32<T>(l_all > 0.f ? v / l_all : 0.f);  // a padding row: zeros, not 0/0
  }
}

template <typename T>
__global__ void PagedKvWriteKernel(const T* __restrict__ k_new, const T* __restrict__ v_new, cpu::PagedRows r,
                                   int64_t n, T* __restrict__ k_pool, T* __restrict__ v_pool) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= r.rows * n) return;
  const int64_t row = idx / n, e = idx % n;
  const int32_t* table = r.block_tables + static_cast<int64_t>(r.row_seq[row]) * r.max_blocks;
  const int64_t t = r.row_pos[row];
  if (t < 0) return;  // a padding row writes nothing
  const int64_t at = (static_cast<int64_t>(table[t / r.block_size]) * r.block_size + t % r.block_size) * n + e;
  k_pool[at] = k_new[idx];
  v_pool[at] = v_new[idx];
}

// One thread per (row, pair): cos/sin in double, rounded to f32, as the CPU f32 path.
template <typename T>
__global__ void RopeAtPositionsKernel(T* __restrict__ x, const int32_t* __restrict__ pos, int64_t rows, int64_t h,
                                      int64_t d, RopeParams params) {
  const int64_t half = d / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * half) return;
  const int64_t row = idx / half, i = idx % half;
  double s, c;
  sincos(static_cast<double>(pos[row]) * RopeInverseFrequency(params, i, d), &s, &c);
  const float cf = static_cast<float>(c), sf = static_cast<float>(s);
  for (int64_t hh = 0; hh < h; ++hh) {
    T* x1 = x + (row * h + hh) * d + i;
    T* x2 = x1 + half;
    const float a = ToF32(*x1), b = ToF32(*x2);
    *x1 = FromF32<T>(a * cf - b * sf);
    *x2 = FromF32<T>(b * cf + a * sf);
  }
}

// One block per output row, threads striding its columns.
template <typename T>
__global__ void GatherRowsKernel(const T* __restrict__ x, const int32_t* __restrict__ rows, int64_t c,
                                 T* __restrict__ out) {
  const T* src = x + static_cast<int64_t>(rows[blockIdx.x]) * c;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * c;
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) dst[i] = src[i];
}

// One block of 256 threads per row; ties go to the lowest id.
template <typename T>
__global__ void ArgmaxRowsKernel(const T* __restrict__ logits, int64_t vocab, int32_t* __restrict__ ids) {
  const T* x = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float best = -FLT_MAX;
  int64_t best_id = INT64_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = ToF32(x[i]);
    if (v > best || (v == best && i < best_id)) best = v, best_id = i;
  }
  __shared__ float sv[256];
  __shared__ int64_t si[256];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = best_id;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      const float ov = sv[threadIdx.x + stride];
      const int64_t oi = si[threadIdx.x + stride];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = static_cast<int32_t>(si[0]);
}

}  // namespace

absl::Status PagedAttentionForward(Float t, const void* q, const void* k_pool, const void* v_pool,
                                   const cpu::PagedRows& r, int64_t h, int64_t kv, int64_t d, void* out,
                                   cudaStream_t stream) {
  if (d > 32 * kMaxPerLane) {
    return absl::InvalidArgumentError(absl::StrCat("paged attention: head dim ", d, " > ", 32 * kMaxPerLane));
  }
  BATON_CHECK(kv > 0 && h % kv == 0 && r.block_size > 0);
  if (r.rows == 0 || h == 0) return absl::OkStatus();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    PagedAttentionKernel<T><<<static_cast<unsigned>(r.rows * h), 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(q), static_cast<const T*>(k_pool), static_cast<const T*>(v_pool), r, h, kv, d, scale,
        static_cast<T*>(out));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status PagedKvWrite(Float t, const void* k_new, const void* v_new, const cpu::PagedRows& r, int64_t kv,
                          int64_t d, void* k_pool, void* v_pool, cudaStream_t stream) {
  const int64_t n = kv * d, work = r.rows * n;
  if (work == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    PagedKvWriteKernel<T><<<static_cast<unsigned>(CeilDiv(work, 256)), 256, 0, stream>>>(
        static_cast<const T*>(k_new), static_cast<const T*>(v_new), r, n, static_cast<T*>(k_pool),
        static_cast<T*>(v_pool));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status RopeAtPositions(Float t, void* x, const int32_t* pos, int64_t rows, int64_t h, int64_t d,
                             const RopeParams& p, cudaStream_t stream) {
  BATON_CHECK(d > 0 && d % 2 == 0);
  const int64_t work = rows * (d / 2);
  if (work == 0 || h == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RopeAtPositionsKernel<T><<<static_cast<unsigned>(CeilDiv(work, 256)), 256, 0, stream>>>(static_cast<T*>(x), pos,
                                                                                            rows, h, d, p);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status ArgmaxRows(Float t, const void* logits, int64_t rows, int64_t vocab, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  BATON_CHECK(vocab > 0);
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    ArgmaxRowsKernel<T><<<static_cast<unsigned>(rows), 256, 0, stream>>>(static_cast<const T*>(logits), vocab, ids);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status GatherRows(Float t, const void* x, const int32_t* rows, int64_t n, int64_t c, void* out,
                        cudaStream_t stream) {
  BATON_CUDA_SIZE_CHECK(n >= 0 && c >= 0 && n < (int64_t{1} << 31));
  if (n == 0 || c == 0) return absl::OkStatus();
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    GatherRowsKernel<T><<<static_cast<unsigned>(n), 256, 0, stream>>>(static_cast<const T*>(x), rows, c,
                                                                        static_cast<T*>(out));
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
