// Offline distillation from the teacher's top-k logits
// (runtime/distill_offline.h): at k = V it equals the online loss; below,
// the online − offline gap equals alpha·T²·Σ p_rest·KL(teacher ‖ student
// within the rest) (the chain rule of the KL, computed here independently),
// is never negative, and shrinks as k grows; the gradient matches f64
// finite differences; top-k extraction is exact; bad input is refused.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/distill_offline.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;
using ::testing::HasSubstr;

Tensor Normal(const Shape& shape, std::mt19937_64& rng, double spread) {
  Tensor t = Tensor::Empty(shape, DType::kF64);
  std::normal_distribution<double> g(0.0, spread);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = g(rng);
  return t;
}

Tensor Targets(int64_t n, int64_t v, std::mt19937_64& rng) {
  Tensor t = Tensor::Empty({n}, DType::kI32);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(v - 1));
  for (int64_t r = 0; r < n; ++r) t.data<int32_t>()[r] = r == 2 ? -1 : id(rng);
  return t;
}

// Σ over counted rows of p_rest·KL(p(·|rest) ‖ q(·|rest)), from full logits.
double RestGap(const Tensor& s, const Tensor& t, const TeacherTopK& top, const Tensor& y, double temp) {
  const int64_t n = s.dim(0), v = s.dim(1), k = top.indices.dim(1);
  double gap = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (y.data<int32_t>()[r] < 0) continue;
    std::vector<bool> kept(v, false);
    for (int64_t i = 0; i < k; ++i) kept[top.indices.data<int32_t>()[r * k + i]] = true;
    double zt = 0, zs = 0, zt_rest = 0, zs_rest = 0;
    for (int64_t j = 0; j < v; ++j) {
      const double et = std::exp(t.data<double>()[r * v + j] / temp), es = std::exp(s.data<double>()[r * v + j] / temp);
      zt += et, zs += es;
      if (!kept[j]) zt_rest += et, zs_rest += es;
    }
    double kl_rest = 0;
    for (int64_t j = 0; j < v; ++j) {
      if (kept[j]) continue;
      const double pc = std::exp(t.data<double>()[r * v + j] / temp) / zt_rest;
      const double qc = std::exp(s.data<double>()[r * v + j] / temp) / zs_rest;
      kl_rest += pc * std::log(pc / qc);
    }
    gap += zt_rest / zt * kl_rest;
  }
  return gap;
}

TEST(OfflineDistill, GapToOnlineIsTheRestTermAndShrinksWithK) {
  std::mt19937_64 rng(31);
  const int64_t n = 8, v = 97;
  const Tensor s = Normal({n, v}, rng, 1.5), t = Normal({n, v}, rng, 3.0), y = Targets(n, v, rng);
  for (double temp : {1.0, 2.0}) {
    const DistillLossOptions o{0.7, temp};
    const double online = DistillLoss(s, t, y, o, 1.0, nullptr)->loss;
    double previous_gap = INFINITY;
    for (int64_t k : {1, 2, 5, 10, 20, 50, 96, 97}) {
      absl::StatusOr<TeacherTopK> top = TeacherTopKOf(t, k, temp);
      ASSERT_TRUE(top.ok()) << top.status();
      absl::StatusOr<DistillLossSums> off = OfflineDistillLoss(s, *top, y, o, 1.0, nullptr);
      ASSERT_TRUE(off.ok()) << off.status();
      const double gap = online - off->loss;
      const double expected = o.alpha * temp * temp * RestGap(s, t, *top, y, temp);
      EXPECT_NEAR(gap, expected, 1e-11 * online) << "k=" << k << " T=" << temp;
      EXPECT_GE(gap, -1e-12 * online) << "k=" << k;  // the top-k KL never exceeds the full one
      EXPECT_LE(gap, previous_gap + 1e-12 * online) << "k=" << k;
      previous_gap = gap;
      if (k == 1) {
        EXPECT_GT(gap, 1e-3 * online) << "one kept id must leave a visible gap";
      }
    }
    EXPECT_NEAR(previous_gap, 0.0, 1e-12 * online) << "k = V is the online loss";
  }
}

TEST(OfflineDistill, GradientMatchesFiniteDifferences) {
  std::mt19937_64 rng(32);
  const int64_t n = 5, v = 19;
  Tensor s = Normal({n, v}, rng, 1.0);
  const Tensor t = Normal({n, v}, rng, 2.0), y = Targets(n, v, rng);
  for (int64_t k : {1, 4, 19}) {
    const DistillLossOptions o{0.6, 1.5};
    const TeacherTopK top = *TeacherTopKOf(t, k, 1.5);
    Tensor d = Tensor::Empty({n, v}, DType::kF64);
    ASSERT_TRUE(OfflineDistillLoss(s, top, y, o, 0.5, &d).ok());
    auto loss = [&] { return 0.5 * OfflineDistillLoss(s, top, y, o, 1.0, nullptr)->loss; };
    EXPECT_TRUE(AllClose(testing::ToDoubles(d), testing::NumericGradient(s, loss), kGradTol, "offline dstudent"))
        << "k=" << k;
    Tensor in_place = s.Clone();
    ASSERT_TRUE(OfflineDistillLoss(in_place, top, y, o, 0.5, &in_place).ok());
    EXPECT_TRUE(testing::BitwiseEqual(in_place, d));
  }
}

TEST(OfflineDistill, TopKIsExact) {
  Tensor x = Tensor::Empty({2, 5}, DType::kF64);
  const double vals[] = {0.5, 3.0, -1.0, 3.0, 2.0, /**/ 1.0, 1.0, 1.0, 1.0, 1.0};
  std::copy(vals, vals + 10, x.data<double>());
  const TeacherTopK top = *TeacherTopKOf(x, 3, 2.0);
  EXPECT_EQ(std::vector<int32_t>(top.indices.data<int32_t>(), top.indices.data<int32_t>() + 6),
            (std::vector<int32_t>{1, 3, 4, 0, 1, 2}));  // ties to the lower id
  EXPECT_EQ(top.values.data<double>()[2], 2.0);
  EXPECT_NEAR(top.rest_lse.data<double>()[0], std::log(std::exp(0.25) + std::exp(-0.5)), 1e-15);
  EXPECT_NEAR(top.rest_lse.data<double>()[1], 0.5 + std::log(2.0), 1e-15);
  EXPECT_TRUE(std::isinf(TeacherTopKOf(x, 5, 1.0)->rest_lse.data<double>()[0]));
}

TEST(OfflineDistill, BadInputIsRefused) {
  std::mt19937_64 rng(33);
  const Tensor s = Normal({3, 10}, rng, 1.0), t = Normal({3, 10}, rng, 1.0), y = Targets(3, 10, rng);
  TeacherTopK top = *TeacherTopKOf(t, 4, 1.0);
  EXPECT_THAT(OfflineDistillLoss(s, top, y, {0.5, 2.0}, 1.0, nullptr).status().message(),
              HasSubstr("distill.temperature=2 but the teacher's top-k logits were stored at temperature 1"));
  top.indices.data<int32_t>()[4 + 1] = top.indices.data<int32_t>()[4];  // row 1 names an id twice
  EXPECT_THAT(OfflineDistillLoss(s, top, y, {0.5, 1.0}, 1.0, nullptr).status().message(), HasSubstr("row 1"));
  EXPECT_THAT(TeacherTopKOf(t, 11, 1.0).status().message(), HasSubstr("distill.topk=11"));
}

}  // namespace
}  // namespace baton
