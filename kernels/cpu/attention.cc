// Causal GQA attention reference kernels (see attention.h).
// Backward: dP = dO·Vᵀ, dS = P∘(dP − rowsum(dO∘O)), dQ = dS·K·scale,
// dK = dSᵀ·Q·scale, dV = Pᵀ·dO (summed over the heads of a kv group).
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/lane_sum.h"

namespace baton::cpu {
namespace {

// Below ~2·this many flops a parallel region costs more than it saves.
constexpr int64_t kParallelMinWork = 1 << 16;

// y += a · x over n elements; x and y never overlap. `omp simd` because -O2's
// cost model does not vectorise loops of unknown trip count.
template <typename T>
inline void Axpy(T a, const T* __restrict__ x, int64_t n, T* __restrict__ y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// dst (d, t) = src rows j at src + j·stride, each d long: one head of k or v
// transposed so that loops over positions are contiguous.
template <typename T>
void Transpose(const T* src, int64_t stride, int64_t t, int64_t d, T* dst) {
  for (int64_t j = 0; j < t; ++j)
    for (int64_t c = 0; c < d; ++c) dst[c * t + j] = src[j * stride + c];
}

// dst rows j at dst + j·stride = src (d, t) transposed back.
template <typename T>
void TransposeBack(const T* src, int64_t t, int64_t d, int64_t stride, T* dst) {
  for (int64_t j = 0; j < t; ++j)
    for (int64_t c = 0; c < d; ++c) dst[j * stride + c] = src[c * t + j];
}

// s[j] = scale · Σ_c q[c]·kt[c, j] for j < len, kt (d, t) row-major; each s[j]
// sums over c in order, vectorised across j. Not inlined: the forward and
// the backward recompute must run the very same instructions.
template <typename T>
__attribute__((noinline)) void ScoreRow(const T* q, const T* kt, int64_t t, int64_t len, int64_t d,
                                        T scale, T* s) {
  for (int64_t j = 0; j < len; ++j) s[j] = T(0);
  for (int64_t c = 0; c < d; ++c) Axpy(q[c], kt + c * t, len, s);
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) s[j] *= scale;
}

// p[j] = exp(s[j] − lse): the one definition of an attention probability.
template <typename T>
__attribute__((noinline)) void ProbRow(const T* __restrict__ s, int64_t len, T lse,
                                       T* __restrict__ p) {
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) p[j] = Exp(s[j] - lse);
}

}  // namespace

template <typename T>
void AttentionForward(const T* q, const T* k, const T* v, int64_t b, int64_t t, int64_t h,
                      int64_t kv, int64_t d, T* out, T* lse, T* probs) {
  const int64_t group = h / kv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t q_stride = h * d, kv_stride = kv * d;  // between consecutive positions
#pragma omp parallel if (b * h * t * t * d > kParallelMinWork)
  {
    std::vector<T> s(t), p_buf(t), kt(d * t);  // per-thread scratch: (t), (t), (d, t)
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < b * h; ++bh) {
      const int64_t bi = bh / h, hh = bh % h, g = hh / group;
      const T* kb = k + bi * t * kv_stride + g * d;
      const T* vb = v + bi * t * kv_stride + g * d;
      Transpose(kb, kv_stride, t, d, kt.data());
      for (int64_t i = 0; i < t; ++i) {
        const int64_t len = i + 1;
        const T* qi = q + (bi * t + i) * q_stride + hh * d;
        ScoreRow(qi, kt.data(), t, len, d, scale, s.data());
        T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < len; ++j) mx = s[j] > mx ? s[j] : mx;
        T* e = p_buf.data();  // exp(s − max), overwritten by the probabilities below
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) e[j] = Exp(s[j] - mx);
        const T row_lse = mx + std::log(LaneSum(e, len));
        lse[bh * t + i] = row_lse;
        T* p = probs != nullptr ? probs + (bh * t + i) * t : p_buf.data();
        ProbRow(s.data(), len, row_lse, p);
        if (probs != nullptr)
          for (int64_t j = len; j < t; ++j) p[j] = T(0);
        T* oi = out + (bi * t + i) * q_stride + hh * d;
        for (int64_t c = 0; c < d; ++c) oi[c] = T(0);
        for (int64_t j = 0; j < len; ++j) Axpy(p[j], vb + j * kv_stride, d, oi);
      }
    }
  }
}

template <typename T>
void AttentionBackward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                       const T* lse, const T* probs, int64_t b, int64_t t, int64_t h, int64_t kv,
                       int64_t d, T* dq, T* dk, T* dv) {
  const int64_t group = h / kv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t q_stride = h * d, kv_stride = kv * d;
#pragma omp parallel if (b * h * t * t * d > kParallelMinWork)
  {
    // Per-thread scratch: rows (t); k, v and their gradients transposed (d, t).
    std::vector<T> s(t), p_buf(t), ds(t), kt(d * t), vt(d * t), dkt(d * t), dvt(d * t);
#pragma omp for schedule(static)
    for (int64_t bg = 0; bg < b * kv; ++bg) {
      const int64_t bi = bg / kv, g = bg % kv;
      const T* kb = k + bi * t * kv_stride + g * d;
      const T* vb = v + bi * t * kv_stride + g * d;
      Transpose(kb, kv_stride, t, d, kt.data());
      Transpose(vb, kv_stride, t, d, vt.data());
      std::fill(dkt.begin(), dkt.end(), T(0));
      std::fill(dvt.begin(), dvt.end(), T(0));
      for (int64_t hh = g * group; hh < (g + 1) * group; ++hh) {
        const int64_t bh = bi * h + hh;
        for (int64_t i = 0; i < t; ++i) {
          const int64_t len = i + 1;
          const int64_t row = (bi * t + i) * q_stride + hh * d;
          const T* qi = q + row;
          const T* doi = dout + row;
          const T* p;
          if (probs != nullptr) {
            p = probs + (bh * t + i) * t;
          } else {
            ScoreRow(qi, kt.data(), t, len, d, scale, s.data());
            ProbRow(s.data(), len, lse[bh * t + i], p_buf.data());
            p = p_buf.data();
          }
          const T delta = LaneDot(doi, out + row, d);
          // ds = dP = dO·Vᵀ first (in the s buffer, free now), then P∘(dP − δ)·scale.
          T* dp = s.data();
          for (int64_t j = 0; j < len; ++j) dp[j] = T(0);
          for (int64_t c = 0; c < d; ++c) Axpy(doi[c], vt.data() + c * t, len, dp);
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) ds[j] = p[j] * (dp[j] - delta) * scale;
          T* dqi = dq + row;
          for (int64_t c = 0; c < d; ++c) dqi[c] = LaneDot(ds.data(), kt.data() + c * t, len);
          for (int64_t c = 0; c < d; ++c) {
            Axpy(qi[c], ds.data(), len, dkt.data() + c * t);
            Axpy(doi[c], p, len, dvt.data() + c * t);
          }
        }
      }
      TransposeBack(dkt.data(), t, d, kv_stride, dk + bi * t * kv_stride + g * d);
      TransposeBack(dvt.data(), t, d, kv_stride, dv + bi * t * kv_stride + g * d);
    }
  }
}

template void AttentionForward<float>(const float*, const float*, const float*, int64_t, int64_t,
                                      int64_t, int64_t, int64_t, float*, float*, float*);
template void AttentionForward<double>(const double*, const double*, const double*, int64_t,
                                       int64_t, int64_t, int64_t, int64_t, double*, double*,
                                       double*);
template void AttentionBackward<float>(const float*, const float*, const float*, const float*,
                                       const float*, const float*, const float*, int64_t, int64_t,
                                       int64_t, int64_t, int64_t, float*, float*, float*);
template void AttentionBackward<double>(const double*, const double*, const double*,
                                        const double*, const double*, const double*,
                                        const double*, int64_t, int64_t, int64_t, int64_t,
                                        int64_t, double*, double*, double*);

}  // namespace baton::cpu
