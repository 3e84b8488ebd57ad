// Top-k teacher logits and the offline distillation loss (see
// distill_topk.h). Threads split rows; each row is reduced by one thread
// in index order, so the bits do not depend on the thread count.
#include "kernels/cpu/distill_topk.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace baton::cpu {

namespace {

// One row of the stored teacher: L = log(Σ exp(v_i/T) + exp(rest)), the
// kept ids' probabilities into pk (−1 elsewhere) and the rest's mass.
// False when an id is outside [0, v) or repeated.
template <typename T>
bool TeacherRow(const T* tv, const int32_t* ti, double rest, int64_t k, int64_t v, double inv_t,
                std::vector<double>& pk, double* lt, double* p_rest) {
  double mt = rest;
  for (int64_t i = 0; i < k; ++i) mt = std::max(mt, static_cast<double>(tv[i]) * inv_t);
  double zt = std::isinf(rest) ? 0.0 : std::exp(rest - mt);
  for (int64_t i = 0; i < k; ++i) zt += std::exp(static_cast<double>(tv[i]) * inv_t - mt);
  *lt = mt + std::log(zt);
  *p_rest = std::isinf(rest) ? 0.0 : std::exp(rest - *lt);
  std::fill(pk.begin(), pk.end(), -1.0);
  for (int64_t i = 0; i < k; ++i) {
    if (ti[i] < 0 || ti[i] >= v || pk[ti[i]] >= 0) return false;
    pk[ti[i]] = std::exp(static_cast<double>(tv[i]) * inv_t - *lt);
  }
  return true;
}

}  // namespace

template <typename T>
void TopKLogits(const T* logits, int64_t n, int64_t v, int64_t k, double temperature, T* values, int32_t* indices,
                T* rest_lse) {
  const double inv_t = 1.0 / temperature;
#pragma omp parallel
  {
    std::vector<int32_t> order(v);
    std::vector<char> kept(v);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const T* x = logits + r * v;
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
      std::fill(kept.begin(), kept.end(), 0);
      for (int64_t i = 0; i < k; ++i) {
        values[r * k + i] = x[order[i]];
        indices[r * k + i] = order[i];
        kept[order[i]] = 1;
      }
      double m = -INFINITY;
      for (int64_t j = 0; j < v; ++j)
        if (!kept[j]) m = std::max(m, static_cast<double>(x[j]) * inv_t);
      double z = 0;
      for (int64_t j = 0; j < v; ++j)
        if (!kept[j]) z += std::exp(static_cast<double>(x[j]) * inv_t - m);
      rest_lse[r] = k == v ? static_cast<T>(-INFINITY) : static_cast<T>(m + std::log(z));
    }
  }
}

template <typename T>
int64_t OfflineDistillRows(const T* student, const T* values, const int32_t* indices, const T* rest_lse,
                           const int32_t* targets, int64_t n, int64_t v, int64_t k, DistillCoeffs c,
                           double grad_scale, T* losses, T* dstudent) {
  const double inv_t = 1.0 / c.temperature, tt = c.temperature * c.temperature;
  const double kd = c.alpha * c.temperature, kce = 1.0 - c.alpha;
  int64_t bad_row = -1;
#pragma omp parallel
  {
    std::vector<double> pk(v);  // (v) the teacher's p̃ over kept ids; −1 = not kept
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const T* s = student + r * v;
      T* d = dstudent != nullptr ? dstudent + r * v : nullptr;
      if (targets[r] < 0) {
        losses[r] = losses[n + r] = losses[2 * n + r] = T(0);
        if (d != nullptr) std::fill(d, d + v, T(0));
        continue;
      }
      const T* tv = values + r * k;
      const int32_t* ti = indices + r * k;
      const double rest = rest_lse[r];
      double lt, p_rest;
      if (!TeacherRow(tv, ti, rest, k, v, inv_t, pk, &lt, &p_rest)) {
#pragma omp critical
        if (bad_row < 0 || r < bad_row) bad_row = r;
        continue;
      }
      // Student: softmax at T (and its rest), softmax at 1 for the CE.
      double m1 = -INFINITY;
      for (int64_t j = 0; j < v; ++j) m1 = std::max(m1, static_cast<double>(s[j]));
      const double ms = m1 * inv_t;  // max(s/T) = max(s)/T for T > 0
      double zs = 0, zs_rest = 0, z1 = 0;
      for (int64_t j = 0; j < v; ++j) {
        const double e = std::exp(static_cast<double>(s[j]) * inv_t - ms);
        zs += e;
        if (pk[j] < 0) zs_rest += e;
        z1 += std::exp(static_cast<double>(s[j]) - m1);
      }
      const double log_zs = std::log(zs);
      double kl = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = pk[ti[i]];
        if (p > 0) kl += p * ((static_cast<double>(tv[i]) * inv_t - lt) - (static_cast<double>(s[ti[i]]) * inv_t - ms - log_zs));
      }
      if (p_rest > 0) kl += p_rest * ((rest - lt) - (std::log(zs_rest) - log_zs));
      const int32_t y = targets[r];
      const double ce = std::log(z1) + m1 - static_cast<double>(s[y]);
      losses[r] = static_cast<T>(c.alpha * tt * kl + kce * ce);
      losses[n + r] = static_cast<T>(kl);
      losses[2 * n + r] = static_cast<T>(ce);
      if (d == nullptr) continue;
      const double rest_share = zs_rest > 0 ? p_rest / zs_rest : 0.0;  // p̃_j = rest_share·e_j off the top-k
      for (int64_t j = 0; j < v; ++j) {
        const double sj = s[j];
        const double e = std::exp(sj * inv_t - ms);
        const double p = pk[j] >= 0 ? pk[j] : rest_share * e;
        const double prob = std::exp(sj - m1) / z1;
        d[j] = static_cast<T>((kce * (prob - (j == y ? 1.0 : 0.0)) + kd * (e / zs - p)) * grad_scale);
      }
    }
  }
  return bad_row;
}

template void TopKLogits<float>(const float*, int64_t, int64_t, int64_t, double, float*, int32_t*, float*);
template void TopKLogits<double>(const double*, int64_t, int64_t, int64_t, double, double*, int32_t*, double*);
template int64_t OfflineDistillRows<float>(const float*, const float*, const int32_t*, const float*, const int32_t*,
                                           int64_t, int64_t, int64_t, DistillCoeffs, double, float*, float*);
template int64_t OfflineDistillRows<double>(const double*, const double*, const int32_t*, const double*,
                                            const int32_t*, int64_t, int64_t, int64_t, DistillCoeffs, double,
                                            double*, double*);

}  // namespace baton::cpu
