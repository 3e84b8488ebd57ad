// Fused softmax cross-entropy: uniform logits give ln V, ignored targets
// give 0 loss and 0 gradient, loss against a naive log-softmax, gradient
// against finite differences, stability for huge logits, in-place gradient.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

Tensor Targets(const std::vector<int32_t>& ids) {
  Tensor t = Tensor::Empty({static_cast<int64_t>(ids.size())}, DType::kI32);
  for (size_t i = 0; i < ids.size(); ++i) t.data<int32_t>()[i] = ids[i];
  return t;
}

TEST(SoftmaxCrossEntropy, UniformLogitsGiveLogV) {
  const int64_t v = 37;
  Tensor logits = Tensor::Empty({3, v}, DType::kF64);
  for (int64_t i = 0; i < 3 * v; ++i) logits.data<double>()[i] = 0.25;
  Tensor losses = Tensor::Empty({3}, DType::kF64);
  BATON_EXPECT_OK(ops::SoftmaxCrossEntropy(logits, Targets({0, 36, 17}), losses, nullptr, 1.0f));
  for (int64_t r = 0; r < 3; ++r) EXPECT_NEAR(losses.data<double>()[r], std::log(37.0), 1e-14);
}

TEST(SoftmaxCrossEntropy, IgnoredTargetsGiveZeroLossAndGradient) {
  std::mt19937_64 rng(1);
  const int64_t v = 37;
  Tensor logits = testing::RandomTensor({4, v}, DType::kF32, rng);
  Tensor losses = Tensor::Empty({4}, DType::kF32);
  Tensor dlogits = testing::RandomTensor({4, v}, DType::kF32, rng);
  BATON_EXPECT_OK(ops::SoftmaxCrossEntropy(logits, Targets({-1, 5, -100, 2}), losses, &dlogits, 0.5f));
  for (int64_t r : {0, 2}) {
    EXPECT_EQ(losses.data<float>()[r], 0.0f);
    for (int64_t j = 0; j < v; ++j) EXPECT_EQ(dlogits.data<float>()[r * v + j], 0.0f);
  }
  EXPECT_GT(losses.data<float>()[1], 0.0f);
}

TEST(SoftmaxCrossEntropy, LossMatchesNaiveAndGradientMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  const int64_t n = 5, v = 37;
  const double scale = 0.3;
  Tensor logits = testing::RandomTensor({n, v}, DType::kF64, rng, 0.1, 3.0);
  const Tensor targets = Targets({4, 36, -1, 0, 19});
  Tensor losses = Tensor::Empty({n}, DType::kF64);
  Tensor dlogits = Tensor::Empty({n, v}, DType::kF64);
  BATON_EXPECT_OK(ops::SoftmaxCrossEntropy(logits, targets, losses, &dlogits, static_cast<float>(scale)));
  std::vector<double> ref(n, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t t = targets.data<int32_t>()[r];
    if (t < 0) continue;
    double z = 0;
    for (int64_t j = 0; j < v; ++j) z += std::exp(logits.data<double>()[r * v + j]);
    ref[r] = std::log(z) - logits.data<double>()[r * v + t];
  }
  EXPECT_TRUE(AllClose(testing::ToDoubles(losses), ref, {1e-14, 1e-14}, "losses"));
  // dlogits is the gradient of scale · Σ losses (grad_scale is a float: use its value).
  const double s = static_cast<float>(scale);
  auto objective = [&] {
    Tensor l = Tensor::Empty({n}, DType::kF64);
    BATON_EXPECT_OK(ops::SoftmaxCrossEntropy(logits, targets, l, nullptr, 1.0f));
    double sum = 0;
    for (int64_t r = 0; r < n; ++r) sum += l.data<double>()[r];
    return s * sum;
  };
  EXPECT_TRUE(AllClose(testing::ToDoubles(dlogits), testing::NumericGradient(logits, objective),
                       kGradTol, "dlogits"));
}

TEST(SoftmaxCrossEntropy, StableForHugeLogitsAndInPlaceGradient) {
  const int64_t v = 19;
  Tensor logits = Tensor::Empty({1, v}, DType::kF32);
  for (int64_t j = 0; j < v; ++j) logits.data<float>()[j] = 1000.0f + static_cast<float>(j);
  Tensor losses = Tensor::Empty({1}, DType::kF32);
  // Reference in double: lse = 1018 + log Σ_k e^{−k}, loss = lse − 1003.
  double z = 0;
  for (int k = 0; k < v; ++k) z += std::exp(-static_cast<double>(k));
  const double want = 1018.0 + std::log(z) - 1003.0;
  std::vector<double> want_grad(v);
  for (int64_t j = 0; j < v; ++j) want_grad[j] = std::exp(static_cast<double>(j) - 18.0) / z;
  want_grad[3] -= 1.0;
  BATON_EXPECT_OK(ops::SoftmaxCrossEntropy(logits, Targets({3}), losses, &logits, 1.0f));  // grad over logits
  // f32 logits near 1000 carry 6e-5 absolute rounding into the loss.
  EXPECT_NEAR(losses.data<float>()[0], want, 2e-4);
  EXPECT_TRUE(AllClose(testing::ToDoubles(logits), want_grad, {1e-6, 1e-5}, "dlogits"));
}

}  // namespace
}  // namespace baton
