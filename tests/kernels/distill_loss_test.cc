// The distillation loss (runtime/distill_loss.h, kernels/cpu/distill_loss.h)
// on one rank: the student gradient against f64 finite differences (and a
// perturbed gradient failing the same check); alpha = 0 bit-equal to the
// vocab-parallel cross-entropy and within 1e-12 of the fused one; KL at
// T = 1 on hand-computed values and against a naive Σ p log(p/q) at any T;
// ignored rows; in-place gradients; argument errors.
#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/distill_loss.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;
using testing::RandomTensor;
using ::testing::HasSubstr;

Tensor Targets(const std::vector<int32_t>& ids) {
  Tensor t = Tensor::Empty({static_cast<int64_t>(ids.size())}, DType::kI32);
  for (size_t i = 0; i < ids.size(); ++i) t.data<int32_t>()[i] = ids[i];
  return t;
}

Tensor Rows(const std::vector<std::vector<double>>& rows) {
  const int64_t n = static_cast<int64_t>(rows.size()), v = static_cast<int64_t>(rows[0].size());
  Tensor t = Tensor::Empty({n, v}, DType::kF64);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < v; ++j) t.data<double>()[r * v + j] = rows[r][j];
  return t;
}

// Σ_j p_j log(p_j / q_j) with p = softmax(t/T), q = softmax(s/T), written naively.
double NaiveKl(const double* s, const double* t, int64_t v, double temp) {
  double zs = 0, zt = 0;
  for (int64_t j = 0; j < v; ++j) zs += std::exp(s[j] / temp), zt += std::exp(t[j] / temp);
  double kl = 0;
  for (int64_t j = 0; j < v; ++j) {
    const double p = std::exp(t[j] / temp) / zt, q = std::exp(s[j] / temp) / zs;
    kl += p * std::log(p / q);
  }
  return kl;
}

TEST(DistillLoss, GradientMatchesFiniteDifferences) {
  std::mt19937_64 rng(11);
  const int64_t n = 6, v = 23;
  for (double temp : {1.0, 2.5}) {
    for (double alpha : {0.0, 0.3, 1.0}) {
      Tensor student = RandomTensor({n, v}, DType::kF64, rng, 0.1, 3.0);
      const Tensor teacher = RandomTensor({n, v}, DType::kF64, rng, 0.1, 3.0);
      const Tensor targets = Targets({4, 22, -1, 0, 19, 7});
      const DistillLossOptions o{alpha, temp};
      const double scale = 0.7;
      Tensor d = Tensor::Empty({n, v}, DType::kF64);
      ASSERT_TRUE(DistillLoss(student, teacher, targets, o, scale, &d).ok());
      auto loss = [&] { return scale * DistillLoss(student, teacher, targets, o, 1.0, nullptr)->loss; };
      const std::vector<double> num = testing::NumericGradient(student, loss);
      EXPECT_TRUE(AllClose(testing::ToDoubles(d), num, kGradTol, "dstudent")) << "T=" << temp << " alpha=" << alpha;
      // The checker can fail: one element off by 100 budgets.
      std::vector<double> bad = testing::ToDoubles(d);
      bad[7] += 100 * (kGradTol.atol + kGradTol.rtol * std::fabs(bad[7]));
      EXPECT_FALSE(AllClose(bad, num, kGradTol, "perturbed"));
    }
  }
}

// The same ops in the same order as the vocab-parallel cross-entropy: equal bits.
template <typename T>
void ExpectAlphaZeroIsCrossEntropy(DType dt) {
  std::mt19937_64 rng(12);
  const int64_t n = 9, v = 101;
  const Tensor student = RandomTensor({n, v}, dt, rng, 0.1, 4.0), teacher = RandomTensor({n, v}, dt, rng, 0.1, 4.0);
  const Tensor targets = Targets({0, 100, 3, -1, 50, 7, 8, 99, 1});
  const float scale = 0.375f;
  Tensor d = Tensor::Empty({n, v}, dt);
  absl::StatusOr<DistillLossSums> got = DistillLoss(student, teacher, targets, {0.0, 3.0}, scale, &d);
  ASSERT_TRUE(got.ok()) << got.status();
  Tensor max = Tensor::Empty({n}, dt), sum = Tensor::Empty({n}, dt), tl = Tensor::Empty({n}, dt),
         losses = Tensor::Empty({n}, dt), dref = Tensor::Empty({n, v}, dt);
  ASSERT_TRUE(ops::RowMax(student, max).ok());
  ASSERT_TRUE(ops::RowSumExp(student, max, sum).ok());
  ASSERT_TRUE(ops::PickTargets(student, targets, 0, tl).ok());
  ASSERT_TRUE(ops::VocabParallelCrossEntropy(student, targets, 0, max, sum, tl, losses, &dref, scale).ok());
  double ce = 0;
  for (int64_t r = 0; r < n; ++r) ce += static_cast<double>(losses.data<T>()[r]);
  EXPECT_EQ(got->loss, ce);
  EXPECT_EQ(got->ce, ce);
  EXPECT_TRUE(testing::BitwiseEqual(d, dref)) << DTypeName(dt);
}

TEST(DistillLoss, AlphaZeroIsExactlyTheCrossEntropy) {
  ExpectAlphaZeroIsCrossEntropy<float>(DType::kF32);
  ExpectAlphaZeroIsCrossEntropy<double>(DType::kF64);
  // And the fused single-rank cross-entropy to f64 rounding.
  std::mt19937_64 rng(13);
  const Tensor s = RandomTensor({5, 64}, DType::kF64, rng, 0.1, 4.0), t = RandomTensor({5, 64}, DType::kF64, rng);
  const Tensor targets = Targets({1, 2, 3, 63, -1});
  Tensor losses = Tensor::Empty({5}, DType::kF64);
  ASSERT_TRUE(ops::SoftmaxCrossEntropy(s, targets, losses, nullptr, 1.0f).ok());
  const double fused = ops::Sum(losses).value();
  EXPECT_NEAR(DistillLoss(s, t, targets, {0.0, 1.0}, 1.0, nullptr)->loss, fused, 1e-12 * fused);
}

TEST(DistillLoss, KlAtTemperatureOneHasKnownValues) {
  // p = (3/4, 1/4) against q = (1/2, 1/2): KL = 3/4·ln(3/2) + 1/4·ln(1/2).
  const Tensor s = Rows({{0.0, 0.0}, {1.0, -2.0}}), t = Rows({{std::log(3.0), 0.0}, {1.0, -2.0}});
  absl::StatusOr<DistillLossSums> got = DistillLoss(s, t, Targets({0, -1}), {1.0, 1.0}, 1.0, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  const double kl = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);  // 0.130812...
  EXPECT_NEAR(got->kl, kl, 1e-15);
  EXPECT_NEAR(got->loss, kl, 1e-15);  // alpha = 1, T = 1
  EXPECT_NEAR(got->ce, std::log(2.0), 1e-15);
  // Identical distributions: KL 0 (a shift of the logits changes nothing).
  const Tensor same_s = Rows({{0.5, -1.0, 2.0}}), same_t = Rows({{10.5, 9.0, 12.0}});
  EXPECT_NEAR(DistillLoss(same_s, same_t, Targets({2}), {1.0, 1.0}, 1.0, nullptr)->kl, 0.0, 1e-15);
}

TEST(DistillLoss, KlMatchesNaiveAtAnyTemperatureScaledByTSquared) {
  std::mt19937_64 rng(14);
  const int64_t n = 4, v = 31;
  const Tensor s = RandomTensor({n, v}, DType::kF64, rng, 0.1, 5.0), t = RandomTensor({n, v}, DType::kF64, rng, 0.1, 5.0);
  const Tensor targets = Targets({1, 2, 3, 4});
  for (double temp : {0.5, 1.0, 4.0}) {
    double naive = 0;
    for (int64_t r = 0; r < n; ++r) naive += NaiveKl(s.data<double>() + r * v, t.data<double>() + r * v, v, temp);
    absl::StatusOr<DistillLossSums> got = DistillLoss(s, t, targets, {0.25, temp}, 1.0, nullptr);
    ASSERT_TRUE(got.ok());
    EXPECT_NEAR(got->kl, naive, 1e-13 * naive) << "T=" << temp;
    EXPECT_NEAR(got->loss, 0.25 * temp * temp * got->kl + 0.75 * got->ce, 1e-13 * got->loss);
  }
}

TEST(DistillLoss, IgnoredRowsAndInPlaceGradient) {
  std::mt19937_64 rng(15);
  const int64_t n = 3, v = 17;
  Tensor s = RandomTensor({n, v}, DType::kF32, rng), t = RandomTensor({n, v}, DType::kF32, rng);
  const Tensor targets = Targets({-1, 5, -7});
  Tensor d = Tensor::Empty({n, v}, DType::kF32);
  absl::StatusOr<DistillLossSums> out = DistillLoss(s, t, targets, {0.5, 2.0}, 0.1, &d);
  ASSERT_TRUE(out.ok());
  for (int64_t r : {0, 2})
    for (int64_t j = 0; j < v; ++j) EXPECT_EQ(d.data<float>()[r * v + j], 0.0f);
  // Row 1 alone carries the loss.
  absl::StatusOr<DistillLossSums> one = DistillLoss(s.Slice(1, 1), t.Slice(1, 1), targets.Slice(1, 1), {0.5, 2.0}, 0.1, nullptr);
  EXPECT_EQ(out->loss, one->loss);
  ASSERT_TRUE(DistillLoss(s, t, targets, {0.5, 2.0}, 0.1, &s).ok());  // in place, as the model runs it
  EXPECT_TRUE(testing::BitwiseEqual(s, d));
}

TEST(DistillLoss, BadArgumentsAreInvalidArgument) {
  std::mt19937_64 rng(16);
  const Tensor s = RandomTensor({2, 8}, DType::kF32, rng), t = RandomTensor({2, 9}, DType::kF32, rng);
  const Tensor y = Targets({0, 1});
  EXPECT_THAT(DistillLoss(s, t, y, {}, 1.0, nullptr).status().message(), HasSubstr("teacher logits"));
  EXPECT_THAT(DistillLoss(s, s, y, {1.5, 1.0}, 1.0, nullptr).status().message(), HasSubstr("alpha=1.5"));
  EXPECT_THAT(DistillLoss(s, s, y, {0.5, 0.0}, 1.0, nullptr).status().message(), HasSubstr("temperature=0"));
  EXPECT_EQ(DistillLoss(s, s, Targets({0}), {}, 1.0, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton
