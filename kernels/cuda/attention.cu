// Causal GQA attention launchers (see attention.h): bf16 first asks cuDNN
// where AttentionUsesCudnn says so (cudnn_attention.h), then with d 64 or 128
// goes to FlashAttention-2 (flash_attention.cuh); everything else to the
// plain kernels below, where a row of d elements lives in one warp: lane l
// holds elements l, l+32, ... (kPer registers), so every dot product is a
// register FMA and a warp sum.
#include <atomic>
#include <cmath>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/flash_attention.cuh"

namespace baton::cuda {
namespace {

constexpr int kPer = 8;  // d ≤ 32·kPer
constexpr int kWarps = 4;

template <typename T>
__device__ __forceinline__ void LoadRow(const T* row, int64_t d, int lane, float (&r)[kPer],
                                        float scale = 1.f) {
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int64_t j = lane + 32 * e;
    r[e] = j < d ? ToF32(row[j]) * scale : 0.f;
  }
}
template <typename T>
__device__ __forceinline__ void StoreRow(T* row, int64_t d, int lane, const float (&r)[kPer],
                                         float scale = 1.f) {
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int64_t j = lane + 32 * e;
    if (j < d) row[j] = FromF32<T>(r[e] * scale);
  }
}
template <typename T>
__device__ __forceinline__ float DotRow(const float (&r)[kPer], const T* row, int64_t d,
                                        int lane) {
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int64_t j = lane + 32 * e;
    if (j < d) s += r[e] * ToF32(row[j]);
  }
  return WarpSum(s);
}
// grid (ceil(t / kWarps), b·h); warp w of block x owns query row x·kWarps + w.
template <typename T>
__global__ void __launch_bounds__(32 * kWarps)
    ForwardKernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                  AttentionDims s, float scale, T* __restrict__ out, float* __restrict__ lse) {
  const int lane = threadIdx.x & 31;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t bh = blockIdx.y, bb = bh / s.h, hh = bh % s.h, kvh = hh / (s.h / s.kv);
  if (i >= s.t) return;
  float qr[kPer], o[kPer];
  LoadRow(q + ((bb * s.t + i) * s.h + hh) * s.d, s.d, lane, qr, scale);
#pragma unroll
  for (int e = 0; e < kPer; ++e) o[e] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int64_t j = 0; j <= i; ++j) {
    const int64_t kv_off = ((bb * s.t + j) * s.kv + kvh) * s.d;
    const float sc = DotRow(qr, k + kv_off, s.d, lane);
    const float m_new = fmaxf(m, sc);
    const float corr = expf(m - m_new);
    const float p = expf(sc - m_new);
    l = l * corr + p;
    const T* vr = v + kv_off;
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int64_t c = lane + 32 * e;
      o[e] = o[e] * corr + (c < s.d ? p * ToF32(vr[c]) : 0.f);
    }
    m = m_new;
  }
  StoreRow(out + ((bb * s.t + i) * s.h + hh) * s.d, s.d, lane, o, 1.f / l);
  if (lane == 0) lse[bh * s.t + i] = m + logf(l);
}

// dq, and delta = Σ dout·out per query row (b, h, t) for the dk/dv pass.
template <typename T>
__global__ void __launch_bounds__(32 * kWarps)
    BackwardDqKernel(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                     const T* __restrict__ v, const T* __restrict__ out,
                     const float* __restrict__ lse, AttentionDims s, float scale,
                     T* __restrict__ dq, float* __restrict__ delta) {
  const int lane = threadIdx.x & 31;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t bh = blockIdx.y, bb = bh / s.h, hh = bh % s.h, kvh = hh / (s.h / s.kv);
  if (i >= s.t) return;
  const int64_t row = ((bb * s.t + i) * s.h + hh) * s.d;
  float qr[kPer], dor[kPer], acc[kPer];
  LoadRow(q + row, s.d, lane, qr, scale);
  LoadRow(dout + row, s.d, lane, dor);
  const float di = DotRow(dor, out + row, s.d, lane);
  const float li = lse[bh * s.t + i];
#pragma unroll
  for (int e = 0; e < kPer; ++e) acc[e] = 0.f;
  for (int64_t j = 0; j <= i; ++j) {
    const int64_t kv_off = ((bb * s.t + j) * s.kv + kvh) * s.d;
    const float p = expf(DotRow(qr, k + kv_off, s.d, lane) - li);
    const float ds = p * (DotRow(dor, v + kv_off, s.d, lane) - di);
    const T* kr = k + kv_off;
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int64_t c = lane + 32 * e;
      if (c < s.d) acc[e] += ds * ToF32(kr[c]);
    }
  }
  StoreRow(dq + row, s.d, lane, acc, scale);
  if (lane == 0) delta[bh * s.t + i] = di;
}

// grid (ceil(t / kWarps), b·kv); warp owns key row j of kv head kvh and sums
// over the h/kv query heads of its group and the query rows i ≥ j.
template <typename T>
__global__ void __launch_bounds__(32 * kWarps)
    BackwardDkDvKernel(const T* __restrict__ dout, const T* __restrict__ q,
                       const T* __restrict__ k, const T* __restrict__ v,
                       const float* __restrict__ lse, const float* __restrict__ delta,
                       AttentionDims s, float scale, T* __restrict__ dk, T* __restrict__ dv) {
  const int lane = threadIdx.x & 31;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t bkv = blockIdx.y, bb = bkv / s.kv, kvh = bkv % s.kv;
  if (j >= s.t) return;
  const int64_t group = s.h / s.kv;
  const int64_t kv_off = ((bb * s.t + j) * s.kv + kvh) * s.d;
  float kr[kPer], vr[kPer], dkr[kPer], dvr[kPer];
  LoadRow(k + kv_off, s.d, lane, kr, scale);
  LoadRow(v + kv_off, s.d, lane, vr);
#pragma unroll
  for (int e = 0; e < kPer; ++e) dkr[e] = dvr[e] = 0.f;
  for (int64_t g = 0; g < group; ++g) {
    const int64_t hh = kvh * group + g;
    const int64_t bh = bb * s.h + hh;
    for (int64_t i = j; i < s.t; ++i) {
      const int64_t row = ((bb * s.t + i) * s.h + hh) * s.d;
      const float p = expf(DotRow(kr, q + row, s.d, lane) - lse[bh * s.t + i]);
      const float ds = p * (DotRow(vr, dout + row, s.d, lane) - delta[bh * s.t + i]);
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        const int64_t c = lane + 32 * e;
        if (c < s.d) {
          dvr[e] += p * ToF32(dout[row + c]);
          dkr[e] += ds * ToF32(q[row + c]);
        }
      }
    }
  }
  StoreRow(dk + kv_off, s.d, lane, dkr, scale);
  StoreRow(dv + kv_off, s.d, lane, dvr);
}

absl::Status CheckDims(const AttentionDims& s) {
  BATON_CUDA_SIZE_CHECK(s.b >= 0 && s.t >= 0 && s.h > 0 && s.kv > 0 && s.h % s.kv == 0);
  BATON_CUDA_SIZE_CHECK(s.d > 0 && s.d <= 32 * kPer);  // head dim 1..256
  BATON_CUDA_SIZE_CHECK(s.b * s.h < 65536 && s.b * s.kv < 65536);
  return absl::OkStatus();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

flash::Params FlashParams(const AttentionDims& s) {
  flash::Params p{};
  p.b = static_cast<int>(s.b);
  p.t = static_cast<int>(s.t);
  p.h = static_cast<int>(s.h);
  p.kv = static_cast<int>(s.kv);
  p.scale = 1.0f / std::sqrt(static_cast<float>(s.d));
  return p;
}

}  // namespace

bool AttentionUsesFlash(Float t_el, const AttentionDims& dims) {
  return t_el == Float::kBF16 && (dims.d == 64 || dims.d == 128) &&
         dims.t < (int64_t{1} << 30);
}

namespace {
std::atomic<AttentionBackend> g_backend{AttentionBackend::kAuto};
}  // namespace

void SetAttentionBackend(AttentionBackend backend) { g_backend.store(backend); }
AttentionBackend GetAttentionBackend() { return g_backend.load(); }

// kAuto rule, from this program's own numbers (bench/attention_bench.cu on
// an H200, 2026-12-03, bf16, causal, deterministic cuDNN backward;
// bench/attention_notes.md):
//   d 128 (B4,T2048,H16):    FA2 fwd 186 / bwd 168 TF/s, cuDNN 457 / 352 -> cuDNN
//   d 128 GQA (KV4):         FA2 fwd 184 / bwd 145 TF/s, cuDNN 463 / 342 -> cuDNN
//   d 64 (B16,T1024,H12):    FA2 fwd 162 / bwd 151 TF/s, cuDNN 259 / 198 -> cuDNN
// The deterministic backward keeps dS in a b·h·t² bf16 workspace: above
// kMaxCudnnBackwardWorkspace (long sequences) the backward takes FA2.
constexpr double kMaxCudnnBackwardWorkspace = 4.0 * (1 << 30);
bool AttentionUsesCudnn(Float t_el, const AttentionDims& dims, bool backward) {
  if (t_el != Float::kBF16 || !CudnnAttentionBuilt()) return false;
  switch (GetAttentionBackend()) {
    case AttentionBackend::kFlash: return false;
    case AttentionBackend::kCudnn: return true;
    case AttentionBackend::kAuto:
      return !backward || 2.0 * dims.b * dims.h * dims.t * dims.t <= kMaxCudnnBackwardWorkspace;
  }
  return false;
}

absl::Status PrepareAttention(Float t_el, const AttentionDims& dims, int device) {
  BATON_CHECK_CUDA(cudaSetDevice(device));
  for (bool backward : {false, true}) {
    if (!AttentionUsesCudnn(t_el, dims, backward)) continue;
    const absl::Status st = CudnnAttentionPrepare(dims, backward);
    if (!st.ok() && st.code() != absl::StatusCode::kUnimplemented) return st;  // no plan: FA2 then
  }
  return absl::OkStatus();
}

namespace {
// cuDNN's answer decides: ok -> done; Unimplemented under kAuto (no plan for
// this shape, remembered by the plan cache) -> take our kernels; anything
// else is a real failure and is returned.
bool CudnnHandled(const absl::Status& s, absl::Status* out) {
  if (s.ok() || s.code() != absl::StatusCode::kUnimplemented ||
      GetAttentionBackend() == AttentionBackend::kCudnn) {
    *out = s;
    return true;
  }
  return false;
}
}  // namespace

absl::Status AttentionForward(Float t_el, const void* q, const void* k, const void* v,
                              const AttentionDims& dims, void* out, float* lse,
                              cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckDims(dims));
  if (dims.b == 0 || dims.t == 0) return absl::OkStatus();
  if (AttentionUsesCudnn(t_el, dims, /*backward=*/false)) {
    absl::Status s;
    if (CudnnHandled(CudnnAttentionForward(q, k, v, dims, out, lse, stream), &s)) return s;
  }
  if (AttentionUsesFlash(t_el, dims) && Aligned16(q) && Aligned16(k) && Aligned16(v) &&
      Aligned16(out)) {
    flash::Params p = FlashParams(dims);
    p.q = static_cast<const bf16*>(q);
    p.k = static_cast<const bf16*>(k);
    p.v = static_cast<const bf16*>(v);
    p.o = static_cast<bf16*>(out);
    p.lse = lse;
    BATON_CHECK_CUDA(dims.d == 64 ? flash::Forward<64>(p, stream) : flash::Forward<128>(p, stream));
    return absl::OkStatus();
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(dims.d));
  const dim3 grid(static_cast<unsigned>(CeilDiv(dims.t, kWarps)),
                  static_cast<unsigned>(dims.b * dims.h));
  DispatchFloat(t_el, [&](auto tag) {
    using T = decltype(tag);
    ForwardKernel<T><<<grid, 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), dims, scale,
        static_cast<T*>(out), lse);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

absl::Status AttentionBackward(Float t_el, const void* dout, const void* q, const void* k,
                               const void* v, const void* out, const float* lse,
                               const AttentionDims& dims, void* dq, void* dk, void* dv,
                               cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckDims(dims));
  if (dims.b == 0 || dims.t == 0) return absl::OkStatus();
  if (AttentionUsesCudnn(t_el, dims, /*backward=*/true)) {
    absl::Status s;
    if (CudnnHandled(CudnnAttentionBackward(dout, q, k, v, out, lse, dims, dq, dk, dv, stream), &s))
      return s;
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(dims.d));
  float* delta = nullptr;  // (b, h, t)
  BATON_CHECK_CUDA(cudaMallocAsync(&delta, sizeof(float) * dims.b * dims.h * dims.t, stream));
  if (AttentionUsesFlash(t_el, dims) && Aligned16(dout) && Aligned16(q) && Aligned16(k) &&
      Aligned16(v) && Aligned16(out) && Aligned16(dq) && Aligned16(dk) && Aligned16(dv)) {
    flash::Params p = FlashParams(dims);
    p.q = static_cast<const bf16*>(q);
    p.k = static_cast<const bf16*>(k);
    p.v = static_cast<const bf16*>(v);
    p.out = static_cast<const bf16*>(out);
    p.dout = static_cast<const bf16*>(dout);
    p.lse = const_cast<float*>(lse);  // read only by backward
    p.delta = delta;
    p.dq = static_cast<bf16*>(dq);
    p.dk = static_cast<bf16*>(dk);
    p.dv = static_cast<bf16*>(dv);
    const cudaError_t e =
        dims.d == 64 ? flash::Backward<64>(p, stream) : flash::Backward<128>(p, stream);
    BATON_CHECK_CUDA(cudaFreeAsync(delta, stream));
    BATON_CHECK_CUDA(e);
    return absl::OkStatus();
  }
  DispatchFloat(t_el, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid_q(static_cast<unsigned>(CeilDiv(dims.t, kWarps)),
                      static_cast<unsigned>(dims.b * dims.h));
    BackwardDqKernel<T><<<grid_q, 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(dout), static_cast<const T*>(q), static_cast<const T*>(k),
        static_cast<const T*>(v), static_cast<const T*>(out), lse, dims, scale,
        static_cast<T*>(dq), delta);
    const dim3 grid_k(static_cast<unsigned>(CeilDiv(dims.t, kWarps)),
                      static_cast<unsigned>(dims.b * dims.kv));
    BackwardDkDvKernel<T><<<grid_k, 32 * kWarps, 0, stream>>>(
        static_cast<const T*>(dout), static_cast<const T*>(q), static_cast<const T*>(k),
        static_cast<const T*>(v), lse, delta, dims, scale, static_cast<T*>(dk),
        static_cast<T*>(dv));
  });
  BATON_CUDA_LAUNCH_CHECK();
  BATON_CHECK_CUDA(cudaFreeAsync(delta, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
