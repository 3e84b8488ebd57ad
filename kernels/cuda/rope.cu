// RoPE kernel and launcher (see rope.h). Fast path: the (position, pair)
// cos/sin table, computed once per (device, seq, d, params) in double by
// the same code as before and rounded to f32, is cached; then one thread
// per (row, head, 8 pairs) rotates with 16-byte loads. Computing double
// sincos in every call made the rotation compute-bound (57 µs for a 34 MB
// tensor at 1.3B, 2.5× its memory time). Fallback (odd head sizes,
// unaligned views): one thread per (b, t, i) computes sin/cos and rotates
// that pair in all heads. RopeParams travels by value.
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"

#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.h"

namespace baton::cuda {
namespace {

template <typename T>
__global__ void RopeKernel(T* __restrict__ x, int64_t bt, int64_t seq, int64_t h, int64_t d,
                           RopeParams params, bool inverse) {
  const int64_t half = d / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= bt * half) return;
  const int64_t i = idx % half;
  const int64_t row = idx / half;  // b·seq + t
  const int64_t p = row % seq;
  const double inv_freq = RopeInverseFrequency(params, i, d);
  double s, c;
  sincos(static_cast<double>(p) * inv_freq, &s, &c);
  const float cf = static_cast<float>(c);
  const float sf = static_cast<float>(inverse ? -s : s);
  for (int64_t hh = 0; hh < h; ++hh) {
    T* x1 = x + (row * h + hh) * d + i;
    T* x2 = x1 + half;
    const float a = ToF32(*x1), b = ToF32(*x2);
    *x1 = FromF32<T>(a * cf - b * sf);
    *x2 = FromF32<T>(b * cf + a * sf);
  }
}

// cs[p·half + i] = cos, cs[seq·half + p·half + i] = sin of p·inv_freq[i].
__global__ void RopeTableKernel(int64_t seq, int64_t d, RopeParams params, float* __restrict__ cs) {
  const int64_t half = d / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= seq * half) return;
  const int64_t i = idx % half;
  const int64_t p = idx / half;
  const double inv_freq = RopeInverseFrequency(params, i, d);
  double s, c;
  sincos(static_cast<double>(p) * inv_freq, &s, &c);
  cs[idx] = static_cast<float>(c);
  cs[seq * half + idx] = static_cast<float>(s);
}

// One thread per (row, head, pack of 8 pairs); half % 8 == 0, x aligned.
template <typename T>
__global__ void RopeTableRotateKernel(T* __restrict__ x, int64_t bt, int64_t seq, int64_t h,
                                      int64_t d, const float* __restrict__ cs, bool inverse) {
  const int64_t half = d / 2, packs = half / kPack;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= bt * h * packs) return;
  const int64_t k = idx % packs;
  const int64_t head = idx / packs;  // row·h + hh
  const int64_t p = (head / h) % seq;
  const Pack<float> c = LoadPack(cs + p * half, k);
  const Pack<float> sn = LoadPack(cs + seq * half + p * half, k);
  T* x1 = x + head * d;
  T* x2 = x1 + half;
  const Pack<T> a = LoadPack(x1, k), b = LoadPack(x2, k);
  Pack<T> r1, r2;
#pragma unroll
  for (int e = 0; e < kPack; ++e) {
    const float cf = c.v[e], sf = inverse ? -sn.v[e] : sn.v[e];
    const float av = ToF32(a.v[e]), bv = ToF32(b.v[e]);
    r1.v[e] = FromF32<T>(av * cf - bv * sf);
    r2.v[e] = FromF32<T>(bv * cf + av * sf);
  }
  StorePack(x1, k, r1);
  StorePack(x2, k, r2);
}

bool SameParams(const RopeParams& a, const RopeParams& b) {
  const RopeScaling &x = a.scaling, &y = b.scaling;
  return a.theta == b.theta && x.type == y.type && x.factor == y.factor &&
         x.low_freq_factor == y.low_freq_factor && x.high_freq_factor == y.high_freq_factor &&
         x.original_max_position == y.original_max_position;
}

struct RopeTable {
  int device;
  int64_t seq, d;
  RopeParams params;
  float* cs;
};

// The cached table for these arguments, made on first use (kept for the
// process: a few KB to a few MB per distinct shape).
absl::StatusOr<const float*> TableFor(int64_t seq, int64_t d, const RopeParams& p, cudaStream_t stream) {
  static std::mutex mu;
  static std::vector<RopeTable>* tables = new std::vector<RopeTable>();
  int device = 0;
  BATON_CHECK_CUDA(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  for (const RopeTable& t : *tables) {
    if (t.device == device && t.seq == seq && t.d == d && SameParams(t.params, p)) return t.cs;
  }
  const int64_t entries = seq * (d / 2);
  float* cs = nullptr;
  BATON_CHECK_CUDA(cudaMalloc(&cs, sizeof(float) * 2 * entries));
  RopeTableKernel<<<static_cast<unsigned>(CeilDiv(entries, 256)), 256, 0, stream>>>(seq, d, p, cs);
  BATON_CUDA_LAUNCH_CHECK();
  // Other streams may use the table next: finish it before publishing.
  BATON_CHECK_CUDA(cudaStreamSynchronize(stream));
  tables->push_back({device, seq, d, p, cs});
  return cs;
}

}  // namespace

absl::Status RopeRotate(Float t, void* x, int64_t b, int64_t seq, int64_t h, int64_t d,
                        const RopeParams& p, bool inverse, cudaStream_t stream) {
  BATON_CHECK(b >= 0 && seq >= 0 && h >= 0 && d > 0 && d % 2 == 0);
  const int64_t work = b * seq * (d / 2);
  if (work == 0 || h == 0) return absl::OkStatus();
  const int64_t half = d / 2;
  if (half % kPack == 0 && AllAligned16(x) && b * seq * h * (half / kPack) < (int64_t{1} << 40)) {
    absl::StatusOr<const float*> cs = TableFor(seq, d, p, stream);
    if (!cs.ok()) return cs.status();
    const int64_t threads = b * seq * h * (half / kPack);
    DispatchFloat(t, [&](auto tag) {
      using T = decltype(tag);
      RopeTableRotateKernel<T><<<static_cast<unsigned>(CeilDiv(threads, 256)), 256, 0, stream>>>(
          static_cast<T*>(x), b * seq, seq, h, d, *cs, inverse);
    });
    BATON_CUDA_LAUNCH_CHECK();
    return absl::OkStatus();
  }
  DispatchFloat(t, [&](auto tag) {
    using T = decltype(tag);
    RopeKernel<T><<<static_cast<unsigned>(CeilDiv(work, 256)), 256, 0, stream>>>(
        static_cast<T*>(x), b * seq, seq, h, d, p, inverse);
  });
  BATON_CUDA_LAUNCH_CHECK();
  return absl::OkStatus();
}

}  // namespace baton::cuda
