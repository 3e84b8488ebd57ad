// AdamW: one step against a hand computation, a second step against a
// plain double implementation, weight decay decoupled from the moments,
// f32 agreeing with f64.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;

Tensor Values(const std::vector<double>& v, DType dt = DType::kF64) {
  return testing::Convert(testing::FromDoubles(v, {static_cast<int64_t>(v.size())}), dt);
}

TEST(AdamW, FirstStepMatchesHandComputation) {
  // Step 1: m̂ = g and v̂ = g² whatever the betas, so p −= lr·(g/(|g|+eps) + wd·p).
  Tensor p = Values({1.0, -2.0}), g = Values({0.5, -0.25});
  Tensor m = Values({0.0, 0.0}), v = Values({0.0, 0.0});
  BATON_EXPECT_OK(ops::AdamW(p, g, m, v, {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                          .weight_decay = 0.01f, .step = 1}));
  // 1 − 0.1·(0.5/(0.5+1e-8) + 0.01·1) = 0.899000002; −2 − 0.1·(−1 + 0.01·(−2)) = −1.898.
  // The hyperparameters are floats (lr = 0.1f is 0.1 + 1.5e-9): budget 1e-8.
  EXPECT_NEAR(p.data<double>()[0], 0.899000002, 1e-8);
  EXPECT_NEAR(p.data<double>()[1], -1.898, 1e-8);
  EXPECT_NEAR(m.data<double>()[0], (1 - 0.9f) * 0.5, 1e-15);
  EXPECT_NEAR(v.data<double>()[1], (1 - 0.999f) * 0.0625, 1e-15);
}

TEST(AdamW, LaterStepMatchesPlainFormula) {
  std::mt19937_64 rng(1);
  const int64_t n = 19;
  Tensor p = testing::RandomTensor({n}, DType::kF64, rng);
  Tensor g = testing::RandomTensor({n}, DType::kF64, rng);
  Tensor m = testing::RandomTensor({n}, DType::kF64, rng);
  Tensor v = testing::RandomTensor({n}, DType::kF64, rng, 0.01, 0.5);
  for (int64_t i = 0; i < n; ++i) v.data<double>()[i] = std::fabs(v.data<double>()[i]);  // v >= 0
  const ops::AdamWParams hp{.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                            .weight_decay = 0.1f, .step = 7};
  std::vector<double> want(n), want_m(n), want_v(n);
  for (int64_t i = 0; i < n; ++i) {
    const double gi = g.data<double>()[i], pi = p.data<double>()[i];
    const double b1 = hp.beta1, b2 = hp.beta2;
    want_m[i] = b1 * m.data<double>()[i] + (1 - b1) * gi;
    want_v[i] = b2 * v.data<double>()[i] + (1 - b2) * gi * gi;
    const double mh = want_m[i] / (1 - std::pow(b1, 7)), vh = want_v[i] / (1 - std::pow(b2, 7));
    want[i] = pi - double{hp.lr} * (mh / (std::sqrt(vh) + double{hp.eps}) + double{hp.weight_decay} * pi);
  }
  BATON_EXPECT_OK(ops::AdamW(p, g, m, v, hp));
  EXPECT_TRUE(AllClose(testing::ToDoubles(p), want, {1e-15, 1e-14}, "p"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(m), want_m, {1e-15, 1e-14}, "m"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(v), want_v, {1e-15, 1e-14}, "v"));
}

TEST(AdamW, WeightDecayIsDecoupledFromTheMoments) {
  std::mt19937_64 rng(2);
  const int64_t n = 11;
  const Tensor p0 = testing::RandomTensor({n}, DType::kF64, rng);
  const Tensor g = testing::RandomTensor({n}, DType::kF64, rng);
  ops::AdamWParams hp{.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                      .weight_decay = 0.0f, .step = 3};
  Tensor p_a = p0.Clone(), m_a = Tensor::Zeros({n}, DType::kF64), v_a = Tensor::Zeros({n}, DType::kF64);
  BATON_EXPECT_OK(ops::AdamW(p_a, g, m_a, v_a, hp));
  hp.weight_decay = 0.5f;
  Tensor p_b = p0.Clone(), m_b = Tensor::Zeros({n}, DType::kF64), v_b = Tensor::Zeros({n}, DType::kF64);
  BATON_EXPECT_OK(ops::AdamW(p_b, g, m_b, v_b, hp));
  // The moments never see the decay (unlike L2 regularisation folded into g) ...
  EXPECT_TRUE(testing::BitwiseEqual(m_a, m_b));
  EXPECT_TRUE(testing::BitwiseEqual(v_a, v_b));
  // ... and the decay moves p by exactly lr·wd·p on top of the Adam step.
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i)
    want[i] = p_a.data<double>()[i] - double{hp.lr} * double{hp.weight_decay} * p0.data<double>()[i];
  EXPECT_TRUE(AllClose(testing::ToDoubles(p_b), want, {1e-15, 1e-14}, "p"));

  // Zero gradient and zero moments: pure decay, p·(1 − lr·wd).
  Tensor p_c = p0.Clone(), zero = Tensor::Zeros({n}, DType::kF64);
  Tensor m_c = Tensor::Zeros({n}, DType::kF64), v_c = Tensor::Zeros({n}, DType::kF64);
  BATON_EXPECT_OK(ops::AdamW(p_c, zero, m_c, v_c, hp));
  for (int64_t i = 0; i < n; ++i)
    EXPECT_DOUBLE_EQ(p_c.data<double>()[i],
                     p0.data<double>()[i] - double{hp.lr} * (0.0 + double{hp.weight_decay} * p0.data<double>()[i]));
}

TEST(AdamW, F32AgreesWithF64) {
  std::mt19937_64 rng(3);
  const int64_t n = 111;
  const Tensor p = testing::RandomTensor({n}, DType::kF64, rng);
  const Tensor g = testing::RandomTensor({n}, DType::kF64, rng);
  const ops::AdamWParams hp{.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                            .weight_decay = 0.1f, .step = 2};
  Tensor p64 = p.Clone(), m64 = Tensor::Zeros({n}, DType::kF64), v64 = Tensor::Zeros({n}, DType::kF64);
  Tensor p32 = testing::Convert(p, DType::kF32), m32 = Tensor::Zeros({n}, DType::kF32),
         v32 = Tensor::Zeros({n}, DType::kF32);
  BATON_EXPECT_OK(ops::AdamW(p64, g, m64, v64, hp));
  BATON_EXPECT_OK(ops::AdamW(p32, testing::Convert(g, DType::kF32), m32, v32, hp));
  EXPECT_TRUE(AllClose(p32, p64, {1e-7, 1e-6}, "p"));
}

}  // namespace
}  // namespace baton
