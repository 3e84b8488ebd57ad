// Tests of the model's math: the block's and the whole model's analytic
// gradients against central finite differences in double (every parameter,
// a sample of elements, with/without qkv bias, tied/untied), the loss and
// logits agreeing with each other, grad_scale and accumulation, the loss of
// a fresh model (≈ ln V), and an overfit of one batch with AdamW.
#include "runtime/model.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "runtime/optimizer.h"
#include "runtime/rng.h"
#include "runtime/transformer_layer.h"

namespace baton {
namespace {

// ---- helpers

Tensor Tokens(int64_t B, int64_t T, int vocab, uint64_t seed, bool some_ignored = false) {
  Tensor t = Tensor::Empty({B, T}, DType::kI32);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < B * T; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t.data<int32_t>()[i] = static_cast<int32_t>((s >> 33) % vocab);
  }
  if (some_ignored) t.data<int32_t>()[B * T - 2] = -1;  // a padded target
  return t;
}

// Fills every element of a f64 tensor with base + scale · N(0,1).
void Randomize(Tensor& t, uint64_t seed, const std::string& name, double base, double scale) {
  FillNormal(t, seed, name, static_cast<float>(scale));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] += base;
}

// Central-difference gradient check of one tensor: for a sample of its
// elements, (f(θ+h) - f(θ-h)) / 2h against the analytic gradient, with the
// budget atol + rtol·|numeric|. Returns "" if every element is within it,
// else the worst element, both values and the budget.
std::string CheckGradient(const std::string& what, Tensor& value, const Tensor& grad,
                          const std::function<double()>& f, double h = 1e-5, double atol = 1e-7,
                          double rtol = 1e-5) {
  const int64_t n = value.numel();
  std::vector<int64_t> idx = {0, n - 1};
  for (int k = 1; k <= 6; ++k) idx.push_back((n * k) / 7 + k % 3);
  double worst_ratio = 0;
  std::string worst;
  for (int64_t i : idx) {
    if (i < 0 || i >= n) continue;
    double* p = value.data<double>() + i;
    const double saved = *p;
    *p = saved + h;
    const double up = f();
    *p = saved - h;
    const double down = f();
    *p = saved;
    const double numeric = (up - down) / (2 * h);
    const double analytic = grad.data<double>()[i];
    const double budget = atol + rtol * std::fabs(numeric);
    const double ratio = std::fabs(analytic - numeric) / budget;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = absl::StrCat(what, "[", i, "]: analytic ", analytic, " numeric ", numeric,
                           " budget ", budget);
    }
  }
  return worst_ratio > 1 ? worst : "";
}

ModelConfig TinyConfig(bool qkv_bias, bool tied) {
  ModelConfig c;
  c.layers = 2;
  c.dim = 16;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 24;
  c.vocab_size = 11;
  c.qkv_bias = qkv_bias;
  c.tie_embeddings = tied;
  c.init_std = 0.3f;  // large enough that every gradient is well above FD noise
  return c;
}

// ---- the block alone

TEST(LayerGradient, MatchesFiniteDifferencesF64) {
  ModelConfig c = TinyConfig(/*qkv_bias=*/true, true);
  c.rope_theta = 100.0;  // faster rotation: RoPE matters at T = 5
  const LayerDims d = LayerDims::From(c, 2, 5);
  const int64_t N = d.rows(), C = d.dim, HD = d.heads * d.head_dim, KVD = d.kv_heads * d.head_dim,
                F = d.ffn;
  LayerWeights w, g;
  struct Spec { const char* name; Tensor LayerWeights::*m; Shape shape; double base, scale; };
  const std::vector<Spec> specs = {
      {"attn_norm", &LayerWeights::attn_norm, {C}, 1.0, 0.2}, {"wq", &LayerWeights::wq, {HD, C}, 0, 0.3},
      {"wk", &LayerWeights::wk, {KVD, C}, 0, 0.3},           {"wv", &LayerWeights::wv, {KVD, C}, 0, 0.3},
      {"bq", &LayerWeights::bq, {HD}, 0, 0.3},               {"bk", &LayerWeights::bk, {KVD}, 0, 0.3},
      {"bv", &LayerWeights::bv, {KVD}, 0, 0.3},              {"wo", &LayerWeights::wo, {C, HD}, 0, 0.3},
      {"mlp_norm", &LayerWeights::mlp_norm, {C}, 1.0, 0.2},  {"w_gate", &LayerWeights::w_gate, {F, C}, 0, 0.3},
      {"w_up", &LayerWeights::w_up, {F, C}, 0, 0.3},         {"w_down", &LayerWeights::w_down, {C, F}, 0, 0.3},
  };
  for (const Spec& s : specs) {
    w.*s.m = Tensor::Empty(s.shape, DType::kF64);
    Randomize(w.*s.m, 5, s.name, s.base, s.scale);
    g.*s.m = Tensor::Zeros(s.shape, DType::kF64);
  }
  Tensor x = Tensor::Empty({N, C}, DType::kF64), r = Tensor::Empty({N, C}, DType::kF64);
  Randomize(x, 6, "x", 0, 1.0);
  Randomize(r, 7, "r", 0, 1.0);  // loss = Σ out ⊙ r, so dout = r

  const LayerActivations shared = AllocateSharedActivations(d, DType::kF64);
  LayerActivations a = AllocateLayerActivations(d, DType::kF64, LayerMode::kKeepAll, shared);
  LayerScratch s = AllocateLayerScratch(d, DType::kF64);
  Tensor out = Tensor::Empty({N, C}, DType::kF64), dx = Tensor::Empty({N, C}, DType::kF64);
  auto loss = [&] {
    EXPECT_TRUE(LayerForward(d, w, x, a, s, &out).ok());
    double sum = 0;
    for (int64_t i = 0; i < N * C; ++i) sum += out.data<double>()[i] * r.data<double>()[i];
    return sum;
  };
  loss();
  EXPECT_TRUE(LayerBackward(d, w, g, x, a, r, dx, s).ok());

  EXPECT_EQ(CheckGradient("x", x, dx, loss), "");
  for (const Spec& sp : specs) EXPECT_EQ(CheckGradient(sp.name, w.*sp.m, g.*sp.m, loss), "");

  // Negative: the checker catches a gradient off by 1e-4 relative.
  g.wq.data<double>()[0] *= 1 + 1e-4;
  EXPECT_NE(CheckGradient("wq", w.wq, g.wq, loss), "");
}

// ---- the whole model

struct GradCase { bool qkv_bias, tied; };

class ModelGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(ModelGradient, MatchesFiniteDifferencesF64) {
  const ModelConfig c = TinyConfig(GetParam().qkv_bias, GetParam().tied);
  absl::StatusOr<Model> created = Model::Create(c, DType::kF64);
  ASSERT_TRUE(created.ok()) << created.status();
  Model& m = *created;
  m.Init(3);
  // Norm weights and biases off their init values, so their gradients are generic.
  for (Param& p : m.params()) {
    if (!p.decay) Randomize(p.value, 4, p.name, p.name.find("norm") != std::string::npos ? 1.0 : 0.0, 0.2);
  }
  const Tensor tokens = Tokens(2, 5, c.vocab_size, 1), targets = Tokens(2, 5, c.vocab_size, 2, true);
  const double loss = m.ForwardBackward(tokens, targets, 1.0, RecomputeConfig{});
  EXPECT_EQ(loss, m.Loss(tokens, targets));  // same ops, same bits
  auto f = [&] { return m.Loss(tokens, targets); };
  int checked = 0;
  for (Param& p : m.params()) {
    EXPECT_EQ(CheckGradient(p.name, p.value, p.grad, f), "");
    ++checked;
  }
  const int per_layer = c.qkv_bias ? 12 : 9;
  EXPECT_EQ(checked, 1 + 2 * per_layer + 1 + (c.tie_embeddings ? 0 : 1));
}

INSTANTIATE_TEST_SUITE_P(BiasAndTying, ModelGradient,
                         ::testing::Values(GradCase{false, true}, GradCase{true, true},
                                           GradCase{false, false}, GradCase{true, false}),
                         [](const auto& info) {
                           return std::string(info.param.qkv_bias ? "Bias" : "NoBias") +
                                  (info.param.tied ? "Tied" : "Untied");
                         });

TEST(Model, ParamNamesShapesAndDecay) {
  ModelConfig c = TinyConfig(true, false);
  absl::StatusOr<Model> m = Model::Create(c, DType::kF32);
  ASSERT_TRUE(m.ok());
  ASSERT_NE(m->FindParam("layers.1.attn.wk"), nullptr);
  EXPECT_EQ(m->FindParam("layers.1.attn.wk")->value.shape(), (Shape{8, 16}));
  EXPECT_EQ(m->FindParam("layers.0.attn.wo")->value.shape(), (Shape{16, 16}));
  EXPECT_EQ(m->FindParam("layers.0.mlp.w_down")->value.shape(), (Shape{16, 24}));
  EXPECT_EQ(m->FindParam("layers.0.attn.bv")->value.shape(), (Shape{8}));
  EXPECT_EQ(m->FindParam("lm_head")->value.shape(), (Shape{11, 16}));
  EXPECT_FALSE(m->FindParam("layers.0.attn.bq")->decay);
  EXPECT_FALSE(m->FindParam("final_norm")->decay);
  EXPECT_TRUE(m->FindParam("embed")->decay);
  EXPECT_EQ(m->FindParam("layers.2.attn.wq"), nullptr);
  // embed 176 + 2·(16 + 256+128+128 + 16+8+8 + 256 + 16 + 384·3) + 16 + lm_head 176
  EXPECT_EQ(m->NumParameters(), 176 + 2 * (16 + 512 + 32 + 256 + 16 + 1152) + 16 + 176);

  c.tie_embeddings = true;
  m = Model::Create(c, DType::kF32);
  EXPECT_EQ(m->FindParam("lm_head"), nullptr);
  EXPECT_EQ(Model::Create(c, DType::kBF16).status().code(), absl::StatusCode::kInvalidArgument);
  c.kv_heads = 3;
  EXPECT_EQ(Model::Create(c, DType::kF32).status().message(), "model.kv_heads=3 must divide model.heads=4");
}

TEST(Model, InitValuesAndOutputProjectionScale) {
  ModelConfig c = TinyConfig(true, true);
  c.init_std = 0.02f;
  c.dim = 64, c.ffn_dim = 256, c.layers = 2;
  absl::StatusOr<Model> m = Model::Create(c, DType::kF64);
  m->Init(9);
  auto rms = [](const Tensor& t) { return std::sqrt(ops::SumSquares(t).value() / t.numel()); };
  EXPECT_EQ(ops::Sum(m->FindParam("layers.0.attn_norm")->value).value(), 64.0);
  EXPECT_EQ(ops::SumSquares(m->FindParam("layers.1.attn.bq")->value).value(), 0.0);
  EXPECT_NEAR(rms(m->FindParam("layers.0.mlp.w_up")->value), 0.02, 0.001);       // 16384 samples
  EXPECT_NEAR(rms(m->FindParam("layers.0.mlp.w_down")->value), 0.01, 0.0005);    // 0.02/sqrt(4)
  // Deterministic, and sharding-invariant by name: a re-init gives the same bits.
  Tensor before = m->FindParam("embed")->value.Clone();
  m->Init(9);
  EXPECT_EQ(std::memcmp(before.raw(), m->FindParam("embed")->value.raw(), before.nbytes()), 0);
  m->Init(10);
  EXPECT_NE(std::memcmp(before.raw(), m->FindParam("embed")->value.raw(), before.nbytes()), 0);
}

TEST(Model, LossIsSumOfLogSoftmaxOfLogits) {
  const ModelConfig c = TinyConfig(false, true);
  absl::StatusOr<Model> m = Model::Create(c, DType::kF64);
  m->Init(11);
  const Tensor tokens = Tokens(2, 5, c.vocab_size, 3), targets = Tokens(2, 5, c.vocab_size, 4, true);
  const Tensor logits = m->Logits(tokens);
  ASSERT_EQ(logits.shape(), (Shape{10, 11}));
  double expected = 0;
  for (int i = 0; i < 10; ++i) {
    const int tgt = targets.data<int32_t>()[i];
    if (tgt < 0) continue;  // ignored
    const double* row = logits.data<double>() + i * 11;
    double mx = row[0], z = 0;
    for (int v = 0; v < 11; ++v) mx = std::max(mx, row[v]);
    for (int v = 0; v < 11; ++v) z += std::exp(row[v] - mx);
    expected += std::log(z) + mx - row[tgt];
  }
  EXPECT_NEAR(m->Loss(tokens, targets), expected, 1e-12 * std::fabs(expected));
}

TEST(Model, GradScaleAndAccumulation) {
  const ModelConfig c = TinyConfig(true, true);
  absl::StatusOr<Model> m = Model::Create(c, DType::kF32);
  m->Init(12);
  const Tensor tokens = Tokens(2, 5, c.vocab_size, 5), targets = Tokens(2, 5, c.vocab_size, 6);
  const double l1 = m->ForwardBackward(tokens, targets, 1.0, RecomputeConfig{});
  std::vector<Tensor> g1;
  for (const Param& p : m->params()) g1.push_back(p.grad.Clone());
  // A power-of-two grad_scale scales every gradient exactly.
  m->ZeroGrad();
  EXPECT_EQ(m->ForwardBackward(tokens, targets, 0.25, RecomputeConfig{}), l1);
  for (size_t i = 0; i < g1.size(); ++i) {
    const Tensor& g = m->params()[i].grad;
    for (int64_t j = 0; j < g.numel(); ++j) {
      ASSERT_EQ(g.data<float>()[j], 0.25f * g1[i].data<float>()[j]) << m->params()[i].name << "[" << j << "]";
    }
  }
  // A second micro-batch accumulates (+=); the sum is rounded in another
  // order than 2·g, so compare to f32 rounding (a few ulps of the largest term).
  EXPECT_EQ(m->ForwardBackward(tokens, targets, 0.25, RecomputeConfig{}), l1);
  for (size_t i = 0; i < g1.size(); ++i) {
    const Tensor& g = m->params()[i].grad;
    for (int64_t j = 0; j < g.numel(); ++j) {
      const float want = 0.5f * g1[i].data<float>()[j];
      ASSERT_NEAR(g.data<float>()[j], want, 1e-9 + 1e-5 * std::fabs(want)) << m->params()[i].name << "[" << j << "]";
    }
  }
}

TEST(Model, FreshLossIsLogVocab) {
  ModelConfig c;
  c.layers = 2, c.dim = 64, c.heads = 4, c.kv_heads = 2, c.ffn_dim = 128, c.vocab_size = 258;
  absl::StatusOr<Model> m = Model::Create(c, DType::kF32);
  m->Init(13);
  const Tensor tokens = Tokens(4, 32, 258, 7), targets = Tokens(4, 32, 258, 8);
  const double mean = m->Loss(tokens, targets) / 128;
  // init_std 0.02: logits have std ≈ 0.02·sqrt(64) = 0.16, adding ≈ 0.013 to ln V.
  EXPECT_NEAR(mean, std::log(258.0), 0.1);
  EXPECT_GT(mean, std::log(258.0) - 0.02);
}

TEST(Model, OverfitsOneBatchWithAdamW) {
  ModelConfig c;
  c.layers = 2, c.dim = 64, c.heads = 4, c.kv_heads = 2, c.ffn_dim = 128, c.vocab_size = 258;
  absl::StatusOr<Model> m = Model::Create(c, DType::kF32);
  m->Init(14);
  OptimizerConfig oc;
  oc.lr = 1e-2f, oc.min_lr = 1e-3f, oc.warmup_steps = 10, oc.weight_decay = 0.0f, oc.grad_clip = 1.0f;
  AdamWOptimizer opt(oc);
  const int64_t B = 4, T = 32, steps = 200;
  const Tensor tokens = Tokens(B, T, 258, 9), targets = Tokens(B, T, 258, 10);
  double first = 0, last = 0;
  for (int64_t step = 0; step < steps; ++step) {
    m->ZeroGrad();
    const double mean = m->ForwardBackward(tokens, targets, 1.0 / (B * T), RecomputeConfig{}) / (B * T);
    if (step == 0) first = mean;
    last = mean;
    ASSERT_TRUE(ClipGradNorm(m->params(), oc.grad_clip).ok());
    ASSERT_TRUE(opt.Step(m->params(), LearningRate(oc, step, steps)).ok());
  }
  EXPECT_NEAR(first, std::log(258.0), 0.1);
  EXPECT_LT(last, 0.05) << "first " << first;  // reaches ~1e-4
  EXPECT_EQ(opt.step(), steps);
}

}  // namespace
}  // namespace baton
