// The checkers of op_test_util.h must be able to fail: a gradient check
// that passes on a correct gradient must reject the same gradient with one
// element pushed just past its budget, and name that element.
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
using testing::AllClose;
using testing::kGradTol;

TEST(GradCheck, AcceptsAnalyticGradientRejectsPerturbedOne) {
  // L = Σ swiglu(gate, up) ∘ R; analytic dgate from the op.
  std::mt19937_64 rng(7);
  const Shape shape{3, 19};
  Tensor gate = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor up = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor r = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor h = Tensor::Empty(shape, DType::kF64);
  Tensor dgate = Tensor::Empty(shape, DType::kF64), dup = Tensor::Empty(shape, DType::kF64);
  BATON_EXPECT_OK(ops::SwiGluBackward(r, gate, up, dgate, dup));
  auto loss = [&] {
    BATON_EXPECT_OK(ops::SwiGlu(gate, up, h));
    return testing::Dot(h, r);
  };
  const std::vector<double> numeric = testing::NumericGradient(gate, loss);
  std::vector<double> analytic = testing::ToDoubles(dgate);
  EXPECT_TRUE(AllClose(analytic, numeric, kGradTol, "dgate"));

  // Push element 11 three budgets away: the checker must fail and say where.
  analytic[11] += 3 * (kGradTol.atol + kGradTol.rtol * std::fabs(numeric[11]));
  const ::testing::AssertionResult bad = AllClose(analytic, numeric, kGradTol, "dgate");
  EXPECT_FALSE(bad);
  EXPECT_THAT(bad.message(), HasSubstr("worst index 11"));

  // Just inside the budget still passes (the check is not over-strict).
  analytic = testing::ToDoubles(dgate);
  analytic[11] = numeric[11] + 0.5 * (kGradTol.atol + kGradTol.rtol * std::fabs(numeric[11]));
  EXPECT_TRUE(AllClose(analytic, numeric, kGradTol, "dgate"));
}

TEST(GradCheck, AllCloseRejectsNaN) {
  EXPECT_FALSE(AllClose(std::vector<double>{1.0, NAN}, std::vector<double>{1.0, 2.0},
                        {1e-3, 1e-3}));
}

TEST(GradCheck, BitwiseEqualSeesOneUlp) {
  Tensor a = Tensor::Zeros({5}, DType::kF32);
  a.data<float>()[2] = 1.0f;
  Tensor b = a.Clone();
  EXPECT_TRUE(testing::BitwiseEqual(a, b));
  b.data<float>()[2] = std::nextafter(1.0f, 2.0f);
  EXPECT_FALSE(testing::BitwiseEqual(a, b));
}

}  // namespace
}  // namespace baton
