// Fused softmax cross-entropy reference kernel (see cross_entropy.h).
// Threaded over rows; each row is reduced by one thread in index order.
#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/lane_sum.h"

namespace baton::cpu {

template <typename T>
void SoftmaxCrossEntropy(const T* logits, const int32_t* targets, int64_t n, int64_t v, T* losses,
                         T* dlogits, T grad_scale) {
#pragma omp parallel if (n * v > 16384)
  {
    std::vector<T> scratch(dlogits == nullptr ? v : 0);  // (v) exp row when no gradient is wanted
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const T* l = logits + r * v;
      const int32_t target = targets[r];
      BATON_CHECK_MSG(target < v, "cross-entropy target >= vocab size");
      T* e = dlogits != nullptr ? dlogits + r * v : scratch.data();  // may alias l: same index
      if (target < 0) {
        losses[r] = T(0);
        if (dlogits != nullptr) std::fill(e, e + v, T(0));
        continue;
      }
      T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < v; ++j) mx = l[j] > mx ? l[j] : mx;
      const T l_target = l[target];  // read before e (which may alias l) is written
#pragma omp simd
      for (int64_t j = 0; j < v; ++j) e[j] = Exp(l[j] - mx);
      const T sum = LaneSum(e, v);
      losses[r] = mx + std::log(sum) - l_target;
      if (dlogits != nullptr) {
        const T k = grad_scale / sum;  // softmax = e / sum
#pragma omp simd
        for (int64_t j = 0; j < v; ++j) e[j] *= k;
        e[target] -= grad_scale;
      }
    }
  }
}

template void SoftmaxCrossEntropy<float>(const float*, const int32_t*, int64_t, int64_t, float*,
                                         float*, float);
template void SoftmaxCrossEntropy<double>(const double*, const int32_t*, int64_t, int64_t, double*,
                                          double*, double);

}  // namespace baton::cpu
