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

// One row of the stored teacher: L = log(Σ exp(v_i/T) + exp(rest)) and the
// rest's mass p_rest = exp(rest − L).
template <typename T>
void TeacherNormaliser(const T* tv, double rest, int64_t k, double inv_t, double* lt, double* p_rest) {
  double mt = rest;
  for (int64_t i = 0; i < k; ++i) mt = std::max(mt, static_cast<double>(tv[i]) * inv_t);
  double zt = std::isinf(rest) ? 0.0 : std::exp(rest - mt);
  for (int64_t i = 0; i < k; ++i) zt += std::exp(static_cast<double>(tv[i]) * inv_t - mt);
  *lt = mt + std::log(zt);
  *p_rest = std::isinf(rest) ? 0.0 : std::exp(rest - *lt);
}

// local[j] = the position in the row's top-k of shard id j, or −1.
void MarkKept(const int32_t* ti, int64_t k, int64_t vocab_start, int64_t v, std::vector<int32_t>& local) {
  std::fill(local.begin(), local.end(), -1);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = static_cast<int64_t>(ti[i]) - vocab_start;
    if (j >= 0 && j < v) local[j] = static_cast<int32_t>(i);
  }
}

}  // namespace

template <typename T>
void TopKLogits(const T* logits, int64_t n, int64_t v, int64_t k, double temperature, T* values, int32_t* indices,
                T* rest_lse) {
  const double inv_t = 1.0 / temperature;
#pragma omp parallel if (n * v > 16384)
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
void OfflineRowMax(const T* student, int64_t n, int64_t v, T* max) {
#pragma omp parallel for schedule(static) if (n * v > 16384)
  for (int64_t r = 0; r < n; ++r) {
    T m = -INFINITY;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, student[r * v + j]);
    max[r] = m;
  }
}

template <typename T>
void OfflineRowSums(const T* student, const int32_t* indices, const int32_t* targets, int64_t vocab_start, int64_t n,
                    int64_t v, int64_t k, double temperature, const T* max, T* sums) {
  const double inv_t = 1.0 / temperature;
#pragma omp parallel if (n * v > 16384)
  {
    std::vector<int32_t> local(v);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const T* s = student + r * v;
      MarkKept(indices + r * k, k, vocab_start, v, local);
      const double m1 = max[r], ms = m1 * inv_t;  // max(s/T) = max(s)/T for T > 0
      double zs = 0, zs_rest = 0, z1 = 0;
      for (int64_t j = 0; j < v; ++j) {
        const double e = std::exp(static_cast<double>(s[j]) * inv_t - ms);
        zs += e;
        if (local[j] < 0) zs_rest += e;
        z1 += std::exp(static_cast<double>(s[j]) - m1);
      }
      const int64_t hit = static_cast<int64_t>(targets[r]) - vocab_start;
      sums[0 * n + r] = static_cast<T>(zs);
      sums[1 * n + r] = static_cast<T>(zs_rest);
      sums[2 * n + r] = static_cast<T>(z1);
      sums[3 * n + r] = targets[r] >= 0 && hit >= 0 && hit < v ? s[hit] : T(0);
      for (int64_t i = 0; i < k; ++i) sums[(kOfflineSums + i) * n + r] = T(0);
      for (int64_t j = 0; j < v; ++j)
        if (local[j] >= 0) sums[(kOfflineSums + local[j]) * n + r] = s[j];
    }
  }
}

template <typename T>
void OfflineRowLoss(const T* values, const T* rest_lse, const int32_t* targets, int64_t n, int64_t k, const T* max,
                    const T* sums, DistillCoeffs c, T* losses) {
  const double inv_t = 1.0 / c.temperature, tt = c.temperature * c.temperature;
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r] < 0) {
      losses[r] = losses[n + r] = losses[2 * n + r] = T(0);
      continue;
    }
    const T* tv = values + r * k;
    const double rest = rest_lse[r];
    double lt, p_rest;
    TeacherNormaliser(tv, rest, k, inv_t, &lt, &p_rest);
    const double m1 = max[r], ms = m1 * inv_t;
    const double log_zs = std::log(static_cast<double>(sums[r]));
    double kl = 0;
    for (int64_t i = 0; i < k; ++i) {
      const double log_p = static_cast<double>(tv[i]) * inv_t - lt;
      const double log_q = static_cast<double>(sums[(kOfflineSums + i) * n + r]) * inv_t - ms - log_zs;
      const double p = std::exp(log_p);
      if (p > 0) kl += p * (log_p - log_q);
    }
    if (p_rest > 0) kl += p_rest * ((rest - lt) - (std::log(static_cast<double>(sums[n + r])) - log_zs));
    const double ce = std::log(static_cast<double>(sums[2 * n + r])) + m1 - static_cast<double>(sums[3 * n + r]);
    losses[r] = static_cast<T>(c.alpha * tt * kl + (1.0 - c.alpha) * ce);
    losses[n + r] = static_cast<T>(kl);
    losses[2 * n + r] = static_cast<T>(ce);
  }
}

template <typename T>
void OfflineBackward(const T* student, const T* values, const int32_t* indices, const T* rest_lse,
                     const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v, int64_t k, const T* max,
                     const T* sums, DistillCoeffs c, double grad_scale, T* dstudent) {
  const double inv_t = 1.0 / c.temperature, kd = c.alpha * c.temperature, kce = 1.0 - c.alpha;
#pragma omp parallel if (n * v > 16384)
  {
    std::vector<int32_t> local(v);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      T* d = dstudent + r * v;  // may alias s: element j is read before it is written
      if (targets[r] < 0) {
        std::fill(d, d + v, T(0));
        continue;
      }
      const T* s = student + r * v;
      const T* tv = values + r * k;
      double lt, p_rest;
      TeacherNormaliser(tv, static_cast<double>(rest_lse[r]), k, inv_t, &lt, &p_rest);
      MarkKept(indices + r * k, k, vocab_start, v, local);
      const double m1 = max[r], ms = m1 * inv_t;
      const double zs = sums[r], zs_rest = sums[n + r], z1 = sums[2 * n + r];
      const double rest_share = zs_rest > 0 ? p_rest / zs_rest : 0.0;  // p̃_j = rest_share·e_j off the top-k
      const int64_t hit = static_cast<int64_t>(targets[r]) - vocab_start;
      for (int64_t j = 0; j < v; ++j) {
        const double sj = s[j];
        const double e = std::exp(sj * inv_t - ms);
        const double p = local[j] >= 0 ? std::exp(static_cast<double>(tv[local[j]]) * inv_t - lt) : rest_share * e;
        const double prob = std::exp(sj - m1) / z1;
        d[j] = static_cast<T>((kce * (prob - (j == hit ? 1.0 : 0.0)) + kd * (e / zs - p)) * grad_scale);
      }
    }
  }
}

template void TopKLogits<float>(const float*, int64_t, int64_t, int64_t, double, float*, int32_t*, float*);
template void TopKLogits<double>(const double*, int64_t, int64_t, int64_t, double, double*, int32_t*, double*);
#define BATON_OFFLINE_INSTANTIATE(T)                                                                           \
  template void OfflineRowMax<T>(const T*, int64_t, int64_t, T*);                                              \
  template void OfflineRowSums<T>(const T*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, \
                                  double, const T*, T*);                                                       \
  template void OfflineRowLoss<T>(const T*, const T*, const int32_t*, int64_t, int64_t, const T*, const T*,     \
                                  DistillCoeffs, T*);                                                          \
  template void OfflineBackward<T>(const T*, const T*, const int32_t*, const T*, const int32_t*, int64_t,       \
                                   int64_t, int64_t, int64_t, const T*, const T*, DistillCoeffs, double, T*);
BATON_OFFLINE_INSTANTIATE(float)
BATON_OFFLINE_INSTANTIATE(double)
#undef BATON_OFFLINE_INSTANTIATE

}  // namespace baton::cpu
