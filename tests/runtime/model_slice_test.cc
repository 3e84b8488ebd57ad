// Model slices (pipeline parts, runtime/model.h) chained by hand equal the
// whole model: with two micro-batches in flight (F0 F1 B1 B0, each in its
// own slot), the loss and every gradient match ForwardBackward's in f64,
// tied and untied; a head slice of a tied model holds an "embed" copy whose
// grad plus the first slice's equals the whole model's.
#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model.h"

namespace baton {
namespace {

ModelConfig Tiny(bool tied) {
  ModelConfig c;
  c.layers = 3;
  c.dim = 16;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 24;
  c.vocab_size = 11;
  c.tie_embeddings = tied;
  return c;
}

Tensor Ids(int64_t b, int64_t t, int salt) {
  Tensor x = Tensor::Empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>((i * 7 + salt) % 11);
  return x;
}

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.data<double>()[i] - b.data<double>()[i]));
  return m;
}

class ModelSliceTest : public ::testing::TestWithParam<bool> {};

TEST_P(ModelSliceTest, TwoSlicesWithTwoMicroBatchesInFlightEqualTheWholeModel) {
  const ModelConfig c = Tiny(GetParam());
  RecomputeConfig rc;
  rc.policy = RecomputePolicy::kSelective;
  auto whole = Model::Create(c, DType::kF64);
  auto first = Model::Create(c, DType::kF64, Device::kCpu, {0, 2, true, false});
  auto last = Model::Create(c, DType::kF64, Device::kCpu, {2, 3, false, true});
  ASSERT_TRUE(whole.ok() && first.ok() && last.ok());
  whole->Init(5);
  first->Init(5);
  last->Init(5);
  EXPECT_EQ(last->holds_embedding_copy(), GetParam());
  const int64_t B = 2, T = 5;
  Tensor tok[2] = {Ids(B, T, 1), Ids(B, T, 4)};
  Tensor tgt[2] = {Ids(B, T, 2), Ids(B, T, 3)};
  double want = 0;
  for (int m = 0; m < 2; ++m) want += whole->ForwardBackward(tok[m], tgt[m], 0.1, rc);

  Tensor act[2], grad[2];
  for (int m = 0; m < 2; ++m) {
    act[m] = Tensor::Empty({B * T, c.dim}, DType::kF64);
    grad[m] = Tensor::Empty({B * T, c.dim}, DType::kF64);
  }
  double got = 0;
  for (int m = 0; m < 2; ++m) {
    EXPECT_EQ(first->PartForward(m, tok[m], tgt[m], nullptr, &act[m], 0.1, rc), 0.0);
    got += last->PartForward(m, tok[m], tgt[m], &act[m], nullptr, 0.1, rc);
  }
  for (int m = 1; m >= 0; --m) {  // reverse order: slots must not share activations
    last->PartBackward(m, nullptr, &grad[m]);
    first->PartBackward(m, &grad[m], nullptr);
  }
  EXPECT_NEAR(got, want, 1e-12 * std::abs(want));
  for (Param& p : whole->params()) {
    Param* a = first->FindParam(p.name);
    Param* b = last->FindParam(p.name);
    ASSERT_TRUE(a != nullptr || b != nullptr) << p.name;
    Tensor g = Tensor::Zeros(p.grad.shape(), DType::kF64);
    if (a != nullptr) g = a->grad.Clone();
    if (b != nullptr) {
      if (a == nullptr) g = b->grad.Clone();
      else for (int64_t i = 0; i < g.numel(); ++i) g.data<double>()[i] += b->grad.data<double>()[i];
      EXPECT_EQ(MaxAbsDiff(p.value, b->value), 0.0) << p.name;  // the same init, by name
    }
    EXPECT_LE(MaxAbsDiff(g, p.grad), 1e-12) << p.name;
  }
  // Forward only agrees with the training forward.
  Tensor out = Tensor::Empty({B * T, c.dim}, DType::kF64);
  first->PartLoss(tok[0], tgt[0], nullptr, &out);
  EXPECT_NEAR(last->PartLoss(tok[0], tgt[0], &out, nullptr), whole->Loss(tok[0], tgt[0]), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Tying, ModelSliceTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Tied" : "Untied"; });

TEST(ModelSlice, EmptyOrOutOfRangeIsRefused) {
  auto bad = Model::Create(Tiny(true), DType::kF32, Device::kCpu, {2, 5, false, true});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("[2, 5) of model.layers=3"));
  auto empty = Model::Create(Tiny(true), DType::kF32, Device::kCpu, {1, 1, false, false});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton
