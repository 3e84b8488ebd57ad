// Distillation loss reference kernels (see distill_loss.h). Threads split
// rows; each row is reduced by one thread in index order, in double, so the
// bits do not depend on the thread count.
#include "kernels/cpu/distill_loss.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"

namespace baton::cpu {

template <typename T>
void DistillRowMax(const T* student, const T* teacher, int64_t n, int64_t v, double temperature, T* max) {
  const double inv_t = 1.0 / temperature;
#pragma omp parallel for schedule(static) if (n * v > 16384)
  for (int64_t r = 0; r < n; ++r) {
    const T* s = student + r * v;
    const T* t = teacher + r * v;
    T ms = -INFINITY, mt = -INFINITY;
    for (int64_t j = 0; j < v; ++j) {
      ms = std::max(ms, s[j]);
      mt = std::max(mt, t[j]);
    }
    // max(x/T) = max(x)/T for T > 0: one division, and the same bits on every shard split.
    max[kMaxStudentT * n + r] = static_cast<T>(static_cast<double>(ms) * inv_t);
    max[kMaxTeacherT * n + r] = static_cast<T>(static_cast<double>(mt) * inv_t);
    max[kMaxStudent * n + r] = ms;
  }
}

template <typename T>
void DistillRowSums(const T* student, const T* teacher, const int32_t* targets, int64_t vocab_start, int64_t n,
                    int64_t v, double temperature, const T* max, T* sums) {
  const double inv_t = 1.0 / temperature;
#pragma omp parallel for schedule(static) if (n * v > 16384)
  for (int64_t r = 0; r < n; ++r) {
    const T* s = student + r * v;
    const T* t = teacher + r * v;
    const double ms_t = max[kMaxStudentT * n + r], mt_t = max[kMaxTeacherT * n + r], m1 = max[kMaxStudent * n + r];
    double zs_t = 0, zt_t = 0, z1 = 0, w = 0;
    for (int64_t j = 0; j < v; ++j) {
      const double sj = s[j], tj = t[j];
      zs_t += std::exp(sj * inv_t - ms_t);
      const double e = std::exp(tj * inv_t - mt_t);
      zt_t += e;
      z1 += std::exp(sj - m1);
      if (e != 0) w += e * ((tj - sj) * inv_t);  // e = 0: a masked teacher logit adds nothing (not 0·inf)
    }
    const int32_t y = targets[r];
    const int64_t hit = static_cast<int64_t>(y) - vocab_start;
    sums[kSumStudentT * n + r] = static_cast<T>(zs_t);
    sums[kSumTeacherT * n + r] = static_cast<T>(zt_t);
    sums[kSumStudent * n + r] = static_cast<T>(z1);
    sums[kSumTeacherDiff * n + r] = static_cast<T>(w);
    sums[kSumTarget * n + r] = y >= 0 && hit >= 0 && hit < v ? s[hit] : T(0);
  }
}

template <typename T>
void DistillRowLoss(const int32_t* targets, int64_t n, const T* max, const T* sums, DistillCoeffs c, T* losses) {
  const double tt = c.temperature * c.temperature;
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r] < 0) {
      losses[kLossTotal * n + r] = losses[kLossKl * n + r] = losses[kLossCe * n + r] = T(0);
      continue;
    }
    const double zt = sums[kSumTeacherT * n + r];
    const double lse_s = static_cast<double>(max[kMaxStudentT * n + r]) + std::log(static_cast<double>(sums[kSumStudentT * n + r]));
    const double lse_t = static_cast<double>(max[kMaxTeacherT * n + r]) + std::log(zt);
    const double kl = static_cast<double>(sums[kSumTeacherDiff * n + r]) / zt - lse_t + lse_s;
    // The cross-entropy as runtime/ops_vocab_parallel.cc writes it, operation for operation.
    const double log_sum = std::log(static_cast<double>(sums[kSumStudent * n + r]));
    const double ce = log_sum + max[kMaxStudent * n + r] - sums[kSumTarget * n + r];
    losses[kLossTotal * n + r] = static_cast<T>(c.alpha * tt * kl + (1.0 - c.alpha) * ce);
    losses[kLossKl * n + r] = static_cast<T>(kl);
    losses[kLossCe * n + r] = static_cast<T>(ce);
  }
}

template <typename T>
void DistillBackward(const T* student, const T* teacher, const int32_t* targets, int64_t vocab_start, int64_t n,
                     int64_t v, const T* max, const T* sums, DistillCoeffs c, double grad_scale, T* dstudent) {
  const double inv_t = 1.0 / c.temperature;
  const double kd = c.alpha * c.temperature, kce = 1.0 - c.alpha;
#pragma omp parallel for schedule(static) if (n * v > 16384)
  for (int64_t r = 0; r < n; ++r) {
    T* d = dstudent + r * v;  // may alias s: element j is read before it is written
    if (targets[r] < 0) {
      std::fill(d, d + v, T(0));
      continue;
    }
    const T* s = student + r * v;
    const T* t = teacher + r * v;
    const double ms_t = max[kMaxStudentT * n + r], mt_t = max[kMaxTeacherT * n + r], m1 = max[kMaxStudent * n + r];
    const double inv_zs = 1.0 / static_cast<double>(sums[kSumStudentT * n + r]);
    const double inv_zt = 1.0 / static_cast<double>(sums[kSumTeacherT * n + r]);
    const double inv_z1 = 1.0 / static_cast<double>(sums[kSumStudent * n + r]);
    const int64_t hit = static_cast<int64_t>(targets[r]) - vocab_start;
    for (int64_t j = 0; j < v; ++j) {
      const double sj = s[j], tj = t[j];
      const double prob = std::exp(sj - m1) * inv_z1;
      const double q = std::exp(sj * inv_t - ms_t) * inv_zs;
      const double p = std::exp(tj * inv_t - mt_t) * inv_zt;
      d[j] = static_cast<T>((kce * (prob - (j == hit ? 1.0 : 0.0)) + kd * (q - p)) * grad_scale);
    }
  }
}

#define BATON_DISTILL_INSTANTIATE(T)                                                                         \
  template void DistillRowMax<T>(const T*, const T*, int64_t, int64_t, double, T*);                          \
  template void DistillRowSums<T>(const T*, const T*, const int32_t*, int64_t, int64_t, int64_t, double,     \
                                  const T*, T*);                                                             \
  template void DistillRowLoss<T>(const int32_t*, int64_t, const T*, const T*, DistillCoeffs, T*);           \
  template void DistillBackward<T>(const T*, const T*, const int32_t*, int64_t, int64_t, int64_t, const T*,  \
                                   const T*, DistillCoeffs, double, T*);
BATON_DISTILL_INSTANTIATE(float)
BATON_DISTILL_INSTANTIATE(double)
#undef BATON_DISTILL_INSTANTIATE

}  // namespace baton::cpu
