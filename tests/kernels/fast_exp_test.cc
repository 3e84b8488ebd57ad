// ExpF32 (kernels/cpu/fast_exp.h): within 2 ulp of exp in double over the
// whole normal range, inside a vectorised loop as the kernels use it;
// saturation instead of 0/inf outside; NaN propagates.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/fast_exp.h"

namespace baton {
namespace {

void ExpArray(const float* __restrict__ x, int64_t n, float* __restrict__ y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = cpu::ExpF32(x[i]);
}

TEST(FastExp, WithinTwoUlpOverNormalRange) {
  std::vector<float> x;
  for (float v = -87.3f; v < 88.0f; v += 0.00731f) x.push_back(v);
  x.push_back(0.0f);
  x.push_back(-0.0f);
  std::vector<float> y(x.size());
  ExpArray(x.data(), static_cast<int64_t>(x.size()), y.data());
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(ref)) - 23);
    const double err = std::fabs(y[i] - ref) / ulp;
    if (err > worst) {
      worst = err;
      worst_i = i;
    }
  }
  EXPECT_LE(worst, 2.0) << "at x = " << x[worst_i] << ": " << y[worst_i] << " vs "
                        << std::exp(static_cast<double>(x[worst_i]));
  EXPECT_EQ(cpu::ExpF32(0.0f), 1.0f);
}

TEST(FastExp, SaturatesOutsideRangeAndPropagatesNaN) {
  std::vector<float> x = {-1000.0f, -INFINITY, 1000.0f, INFINITY, NAN, -NAN};
  std::vector<float> y(x.size());
  ExpArray(x.data(), static_cast<int64_t>(x.size()), y.data());
  EXPECT_GT(y[0], 0.0f);
  EXPECT_LT(y[0], 1.2e-38f);
  EXPECT_EQ(y[1], y[0]);
  EXPECT_GT(y[2], 1.6e38f);
  EXPECT_TRUE(std::isfinite(y[2]));
  EXPECT_EQ(y[3], y[2]);
  EXPECT_TRUE(std::isnan(y[4]));
  EXPECT_TRUE(std::isnan(y[5]));
}

}  // namespace
}  // namespace baton
