// Recompute policies change memory, never math: every policy (full,
// selective, every_k) must give the same bits of loss and gradient as
// "none" on the CPU backend, across micro-batch accumulation and policy
// switches on one model, and keep the activation bytes its layout promises.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/model.h"

namespace baton {
namespace {

Tensor Tokens(int64_t B, int64_t T, int vocab, uint64_t seed) {
  Tensor t = Tensor::Empty({B, T}, DType::kI32);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < B * T; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t.data<int32_t>()[i] = static_cast<int32_t>((s >> 33) % vocab);
  }
  return t;
}

ModelConfig Config() {
  ModelConfig c;
  c.layers = 3;  // every_k = 2 recomputes layers 0 and 2, keeps layer 1
  c.dim = 32;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 48;
  c.vocab_size = 37;
  c.qkv_bias = true;
  c.tie_embeddings = false;
  c.init_std = 0.1f;
  return c;
}

// Bitwise comparison of every gradient: "" if identical, else the first
// differing element.
std::string FirstGradDifference(const std::vector<Param>& a, const std::vector<Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    const float* x = a[i].grad.data<float>();
    const float* y = b[i].data<float>();
    for (int64_t j = 0; j < b[i].numel(); ++j) {
      if (std::memcmp(&x[j], &y[j], sizeof(float)) != 0) {
        return absl::StrCat(a[i].name, "[", j, "]: ", x[j], " vs ", y[j]);
      }
    }
  }
  return "";
}

std::vector<Tensor> Grads(const Model& m) {
  std::vector<Tensor> g;
  for (const Param& p : m.params()) g.push_back(p.grad.Clone());
  return g;
}

RecomputeConfig Policy(RecomputePolicy p, int every_k = 2) { return RecomputeConfig{p, every_k}; }

// Two micro-batches accumulated, as the trainer does.
double TwoMicroBatches(Model& m, const RecomputeConfig& rc) {
  const int64_t B = 2, T = 9;
  double loss = m.ForwardBackward(Tokens(B, T, 37, 1), Tokens(B, T, 37, 2), 1.0 / 36, rc);
  loss += m.ForwardBackward(Tokens(B, T, 37, 3), Tokens(B, T, 37, 4), 1.0 / 36, rc);
  return loss;
}

TEST(Recompute, EveryPolicyGivesTheSameBitsAsNone) {
  absl::StatusOr<Model> ref = Model::Create(Config(), DType::kF32);
  ASSERT_TRUE(ref.ok());
  ref->Init(21);
  const double ref_loss = TwoMicroBatches(*ref, Policy(RecomputePolicy::kNone));
  const std::vector<Tensor> ref_grads = Grads(*ref);

  for (const RecomputeConfig& rc :
       {Policy(RecomputePolicy::kFull), Policy(RecomputePolicy::kSelective),
        Policy(RecomputePolicy::kEveryK, 2), Policy(RecomputePolicy::kEveryK, 1)}) {
    SCOPED_TRACE(absl::StrCat(RecomputePolicyName(rc.policy), " every_k=", rc.every_k));
    absl::StatusOr<Model> m = Model::Create(Config(), DType::kF32);
    m->Init(21);
    const double loss = TwoMicroBatches(*m, rc);
    EXPECT_EQ(std::memcmp(&loss, &ref_loss, sizeof loss), 0) << loss << " vs " << ref_loss;
    EXPECT_EQ(FirstGradDifference(m->params(), ref_grads), "");
  }
}

TEST(Recompute, SwitchingPolicyOnOneModelKeepsTheBits) {
  absl::StatusOr<Model> m = Model::Create(Config(), DType::kF32);
  m->Init(22);
  const double ref_loss = TwoMicroBatches(*m, Policy(RecomputePolicy::kNone));
  const std::vector<Tensor> ref_grads = Grads(*m);
  for (RecomputePolicy p : {RecomputePolicy::kFull, RecomputePolicy::kSelective,
                            RecomputePolicy::kEveryK, RecomputePolicy::kNone}) {
    m->ZeroGrad();
    EXPECT_EQ(TwoMicroBatches(*m, Policy(p)), ref_loss) << RecomputePolicyName(p);
    EXPECT_EQ(FirstGradDifference(m->params(), ref_grads), "") << RecomputePolicyName(p);
  }
  // Another (B, T) in between reallocates, then the original shape still matches.
  m->ZeroGrad();
  m->ForwardBackward(Tokens(1, 4, 37, 5), Tokens(1, 4, 37, 6), 1.0, Policy(RecomputePolicy::kFull));
  m->ZeroGrad();
  EXPECT_EQ(TwoMicroBatches(*m, Policy(RecomputePolicy::kSelective)), ref_loss);
  EXPECT_EQ(FirstGradDifference(m->params(), ref_grads), "");
}

TEST(Recompute, GradDifferenceCheckerCatchesOneUlp) {
  absl::StatusOr<Model> m = Model::Create(Config(), DType::kF32);
  m->Init(23);
  TwoMicroBatches(*m, Policy(RecomputePolicy::kNone));
  std::vector<Tensor> grads = Grads(*m);
  ASSERT_EQ(FirstGradDifference(m->params(), grads), "");
  grads[5].data<float>()[3] = std::nextafter(grads[5].data<float>()[3], 1.0f);
  EXPECT_NE(FirstGradDifference(m->params(), grads), "");
}

TEST(Recompute, ActivationBytesPerLayer) {
  absl::StatusOr<Model> m = Model::Create(Config(), DType::kF32);
  const int64_t B = 2, T = 9, N = B * T, C = 32, H = 4, KV = 2, D = 8, F = 48;
  // Selective keeps x, h (N, C); rstd1, rstd2 (N); q, att (N, H·D); lse
  // (B, H, T); gate, up (N, F). None adds ln1, ln2 (N, C), k, v (N, KV·D),
  // swi (N, F) and probs (B, H, T, T).
  const int64_t selective = 4 * (2 * N * C + 2 * N + 2 * N * H * D + B * H * T + 2 * N * F);
  const int64_t none = selective + 4 * (2 * N * C + 2 * N * KV * D + N * F + B * H * T * T);
  const int64_t full = 4 * N * C;
  EXPECT_EQ(m->ActivationBytesPerLayer(Policy(RecomputePolicy::kNone), B, T),
            (std::vector<int64_t>{none, none, none}));
  EXPECT_EQ(m->ActivationBytesPerLayer(Policy(RecomputePolicy::kSelective), B, T),
            (std::vector<int64_t>{selective, selective, selective}));
  EXPECT_EQ(m->ActivationBytesPerLayer(Policy(RecomputePolicy::kFull), B, T),
            (std::vector<int64_t>{full, full, full}));
  EXPECT_EQ(m->ActivationBytesPerLayer(Policy(RecomputePolicy::kEveryK, 2), B, T),
            (std::vector<int64_t>{full, none, full}));
  EXPECT_EQ(full, 2304);
  EXPECT_EQ(none, 29520);
}

}  // namespace
}  // namespace baton
