// Tests of AdamW (against a hand computation on a 3-element param, decay
// only where Param.decay), global-norm clipping (exact scale, returned
// pre-clip norm, off switch), GlobalGradNorm as the trainer calls it
// (counted subset, a cross-rank reduce, the flat form, a failing reduce)
// and the LR schedule at known steps.
#include "runtime/optimizer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace baton {
namespace {

Param MakeParam(const char* name, std::vector<float> value, std::vector<float> grad, bool decay) {
  Param p;
  p.name = name;
  p.value = Tensor::Empty({static_cast<int64_t>(value.size())}, DType::kF32);
  p.grad = Tensor::Empty({static_cast<int64_t>(grad.size())}, DType::kF32);
  for (size_t i = 0; i < value.size(); ++i) {
    p.value.data<float>()[i] = value[i];
    p.grad.data<float>()[i] = grad[i];
  }
  p.decay = decay;
  return p;
}

// ---- learning rate

TEST(LearningRate, WarmupThenCosineToMin) {
  OptimizerConfig c;
  c.lr = 1e-3f, c.min_lr = 1e-4f, c.warmup_steps = 10, c.decay = LrDecay::kCosine;
  const int64_t total = 111;  // decay over steps 10..110: 100 intervals
  EXPECT_FLOAT_EQ(LearningRate(c, 0, total), 1e-4f);  // (0+1)/10 of peak
  EXPECT_FLOAT_EQ(LearningRate(c, 4, total), 5e-4f);
  EXPECT_FLOAT_EQ(LearningRate(c, 9, total), 1e-3f);
  EXPECT_FLOAT_EQ(LearningRate(c, 10, total), 1e-3f);
  EXPECT_FLOAT_EQ(LearningRate(c, 60, total), 5.5e-4f);  // half-way: (lr + min) / 2
  EXPECT_FLOAT_EQ(LearningRate(c, 35, total), 1e-4f + 9e-4f * 0.5f * (1 + std::cos(M_PI / 4)));
  EXPECT_FLOAT_EQ(LearningRate(c, 110, total), 1e-4f);  // the last step reaches min_lr
  EXPECT_FLOAT_EQ(LearningRate(c, 500, total), 1e-4f);  // and stays there
}

TEST(LearningRate, LinearConstantAndNoWarmup) {
  OptimizerConfig c;
  c.lr = 1e-3f, c.min_lr = 1e-4f, c.warmup_steps = 10, c.decay = LrDecay::kLinear;
  EXPECT_FLOAT_EQ(LearningRate(c, 35, 111), 1e-3f - 0.25f * 9e-4f);
  EXPECT_FLOAT_EQ(LearningRate(c, 110, 111), 1e-4f);
  c.decay = LrDecay::kConstant;
  EXPECT_FLOAT_EQ(LearningRate(c, 5, 111), 6e-4f);
  EXPECT_FLOAT_EQ(LearningRate(c, 110, 111), 1e-3f);
  c.decay = LrDecay::kCosine, c.warmup_steps = 0;
  EXPECT_FLOAT_EQ(LearningRate(c, 0, 101), 1e-3f);
  EXPECT_FLOAT_EQ(LearningRate(c, 50, 101), 5.5e-4f);
  EXPECT_FLOAT_EQ(LearningRate(c, 0, 1), 1e-4f);  // a one-step run ends at min_lr
}

// ---- clipping

TEST(ClipGradNorm, ScalesExactlyAboveMaxAndReturnsPreClipNorm) {
  std::vector<Param> ps = {MakeParam("a", {0, 0}, {3, 4}, true), MakeParam("b", {0}, {12}, false)};
  EXPECT_DOUBLE_EQ(ClipGradNorm(ps, 20.0f).value(), 13.0);  // below max: untouched
  EXPECT_EQ(ps[0].grad.data<float>()[1], 4.0f);
  EXPECT_DOUBLE_EQ(ClipGradNorm(ps, 0.0f).value(), 13.0);  // 0 = off
  EXPECT_EQ(ps[1].grad.data<float>()[0], 12.0f);
  EXPECT_DOUBLE_EQ(ClipGradNorm(ps, 6.5f).value(), 13.0);  // scale 0.5, exact in binary
  EXPECT_EQ(ps[0].grad.data<float>()[0], 1.5f);
  EXPECT_EQ(ps[0].grad.data<float>()[1], 2.0f);
  EXPECT_EQ(ps[1].grad.data<float>()[0], 6.0f);
  EXPECT_DOUBLE_EQ(ClipGradNorm(ps, 6.5f).value(), 6.5);  // already at the max: untouched
  EXPECT_EQ(ps[1].grad.data<float>()[0], 6.0f);
}

// What RankTrainer::ClipGradNorm passes: only the counted grads enter the
// local sum, `reduce` adds the other ranks' sums, the scale is the float ratio.
TEST(GlobalGradNorm, CountsTheChosenGradsAndSumsOverRanks) {
  std::vector<Param> ps = {MakeParam("a", {0, 0}, {3, 4}, true), MakeParam("copy", {0}, {100}, false)};
  GradNormPlan plan;
  plan.counted = {&ps[0].grad};  // the tied copy is not counted
  int reduced = 0;
  plan.reduce = [&](double* sum) {
    ++reduced;
    EXPECT_EQ(*sum, 25.0);  // 3² + 4²: this rank's share only
    *sum += 144.0;          // the other ranks hold 12²
    return absl::OkStatus();
  };
  float scale = 0;
  absl::StatusOr<double> norm = GlobalGradNorm(plan, 6.5f, &scale);
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(*norm, 13.0);
  EXPECT_EQ(scale, 0.5f);
  EXPECT_EQ(reduced, 1);
  EXPECT_EQ(ps[0].grad.data<float>()[0], 3.0f);  // grads untouched: the caller applies the scale
  ASSERT_TRUE(GlobalGradNorm(plan, 20.0f, &scale).ok());
  EXPECT_EQ(scale, 1.0f);  // below the max
  ASSERT_TRUE(GlobalGradNorm(plan, 0.0f, &scale).ok());
  EXPECT_EQ(scale, 1.0f);  // 0 = off
}

TEST(GlobalGradNorm, FlatFormAndAFailingReduce) {
  Param p = MakeParam("flat", {0, 0, 0}, {1, 2, 2}, false);
  GradNormPlan plan;
  plan.flat = &p.grad;
  float scale = 0;
  EXPECT_EQ(*GlobalGradNorm(plan, 1.0f, &scale), 3.0);
  EXPECT_EQ(scale, static_cast<float>(1.0 / 3.0));
  float flat_scale = 0;
  EXPECT_EQ(GradNormFlat(p.grad, 1.0f, &flat_scale).value(), 3.0);  // the one-GPU helper is the same function
  EXPECT_EQ(flat_scale, scale);
  plan.reduce = [](double*) { return absl::UnavailableError("tp peer gone"); };
  EXPECT_EQ(GlobalGradNorm(plan, 1.0f, &scale).status().code(), absl::StatusCode::kUnavailable);
}

TEST(ClipGradNorm, InexactScaleIsTheFloatRatio) {
  std::vector<Param> ps = {MakeParam("a", {0, 0, 0}, {1, 2, 2}, true)};  // norm 3
  EXPECT_DOUBLE_EQ(ClipGradNorm(ps, 1.0f).value(), 3.0);
  const float s = static_cast<float>(1.0 / 3.0);
  EXPECT_EQ(ps[0].grad.data<float>()[0], 1 * s);
  EXPECT_EQ(ps[0].grad.data<float>()[2], 2 * s);
}

// ---- AdamW

// Reference AdamW in double: m ← β1 m + (1-β1) g; v ← β2 v + (1-β2) g²;
// p ← p - lr·(m/(1-β1^t) / (sqrt(v/(1-β2^t)) + eps) + wd·p).
struct RefAdamW {
  std::vector<double> p, m, v;
  void Step(const std::vector<double>& g, double lr, double b1, double b2, double eps, double wd, int t) {
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * (mh / (std::sqrt(vh) + eps) + wd * p[i]);
    }
  }
};

TEST(AdamW, MatchesHandComputationWithDecayOnlyWhereAllowed) {
  OptimizerConfig c;
  c.beta1 = 0.9f, c.beta2 = 0.95f, c.eps = 1e-8f, c.weight_decay = 0.1f;
  AdamWOptimizer opt(c);
  std::vector<Param> ps = {MakeParam("w", {0.5f, -1.0f, 2.0f}, {0.1f, -0.2f, 0.3f}, true),
                           MakeParam("norm", {0.5f, -1.0f, 2.0f}, {0.1f, -0.2f, 0.3f}, false)};
  const double b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;  // the f32 values, widened
  RefAdamW decayed{{0.5, -1.0, 2.0}, {0, 0, 0}, {0, 0, 0}}, plain = decayed;
  const std::vector<std::vector<float>> grads = {{0.1f, -0.2f, 0.3f}, {-0.05f, 0.4f, 0.3f}, {0.2f, 0.0f, -0.1f}};
  const std::vector<float> lrs = {0.01f, 0.02f, 0.005f};
  for (int t = 0; t < 3; ++t) {
    for (Param& p : ps)
      for (int i = 0; i < 3; ++i) p.grad.data<float>()[i] = grads[t][i];
    ASSERT_TRUE(opt.Step(ps, lrs[t]).ok());
    const std::vector<double> g(grads[t].begin(), grads[t].end());
    decayed.Step(g, lrs[t], b1, b2, eps, wd, t + 1);
    plain.Step(g, lrs[t], b1, b2, eps, 0.0, t + 1);
    EXPECT_EQ(opt.step(), t + 1);
    for (int i = 0; i < 3; ++i) {
      // f32 arithmetic on values of size ~1: a few ulps.
      EXPECT_NEAR(ps[0].value.data<float>()[i], decayed.p[i], 1e-6) << "t=" << t << " i=" << i;
      EXPECT_NEAR(ps[1].value.data<float>()[i], plain.p[i], 1e-6) << "t=" << t << " i=" << i;
      EXPECT_NEAR(opt.m(0).data<float>()[i], decayed.m[i], 1e-7);
      EXPECT_NEAR(opt.v(1).data<float>()[i], plain.v[i], 1e-8);
    }
  }
  // The first step moves each element by ≈ lr·(sign(g) + wd·p): -0.01·(1 + 0.05) for w[0].
  EXPECT_NE(decayed.p[0], plain.p[0]);
  EXPECT_EQ(opt.num_states(), 2u);
}

TEST(AdamW, RestoredStateContinuesBitForBit) {
  OptimizerConfig c;
  AdamWOptimizer a(c), b(c);
  std::vector<Param> pa = {MakeParam("w", {0.5f, -1.0f, 2.0f}, {0.1f, -0.2f, 0.3f}, true)};
  std::vector<Param> pb = {MakeParam("w", {0.5f, -1.0f, 2.0f}, {0.1f, -0.2f, 0.3f}, true)};
  ASSERT_TRUE(a.Step(pa, 0.01f).ok());
  // "Checkpoint": copy value, m, v and step into a fresh optimizer.
  pb[0].value.CopyFrom(pa[0].value);
  b.InitState(pb);
  b.m(0).CopyFrom(a.m(0));
  b.v(0).CopyFrom(a.v(0));
  b.set_step(a.step());
  ASSERT_TRUE(a.Step(pa, 0.01f).ok());
  ASSERT_TRUE(b.Step(pb, 0.01f).ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pa[0].value.data<float>()[i], pb[0].value.data<float>()[i]);
  EXPECT_EQ(b.step(), 2);
}

}  // namespace
}  // namespace baton
