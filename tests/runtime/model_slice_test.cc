// Model slices (pipeline parts, runtime/model.h) chained by hand equal the
// whole model: with two micro-batches in flight (F0 F1 B1 B0, each in its
// own slot), the loss and every gradient match ForwardBackward's in f64,
// tied and untied; a head slice of a tied model holds an "embed" copy whose
// grad plus the first slice's equals the whole model's. The split backward
// (input half, then weight half, as zero-bubble schedules run it) gives the
// bits of the whole backward, and the grad-ready hook covers every param
// once per micro-batch.
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

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

TEST_P(ModelSliceTest, SplitBackwardGivesTheSameBitsAndReportsEveryParamOnce) {
  const ModelConfig c = Tiny(GetParam());
  RecomputeConfig rc;
  rc.policy = RecomputePolicy::kFull;  // the weight half must not read recomputed buffers
  auto plain = Model::Create(c, DType::kF32, Device::kCpu, {1, 3, false, true});
  auto split = Model::Create(c, DType::kF32, Device::kCpu, {1, 3, false, true});
  ASSERT_TRUE(plain.ok() && split.ok());
  plain->Init(9);
  split->Init(9);
  std::vector<int> reported(split->params().size(), 0);
  int calls = 0;
  split->SetGradReadyHook([&](int first, int end) {
    ++calls;
    for (int i = first; i < end; ++i) ++reported[i];
  });
  const int64_t B = 2, T = 4;
  Tensor tok[2] = {Ids(B, T, 1), Ids(B, T, 6)};
  Tensor in[2], gin[2][2];
  for (int m = 0; m < 2; ++m) {
    in[m] = Tensor::Empty({B * T, c.dim}, DType::kF32);
    for (int64_t i = 0; i < in[m].numel(); ++i) in[m].data<float>()[i] = std::sin(0.3f * i + m);
    for (int k = 0; k < 2; ++k) gin[k][m] = Tensor::Empty({B * T, c.dim}, DType::kF32);
  }
  for (int m = 0; m < 2; ++m) {
    plain->PartForward(m, tok[m], tok[m], &in[m], nullptr, 0.1, rc);
    split->PartForward(m, tok[m], tok[m], &in[m], nullptr, 0.1, rc);
  }
  plain->PartBackward(0, nullptr, &gin[0][0]);
  plain->PartBackward(1, nullptr, &gin[0][1]);
  split->PartBackwardInput(0, nullptr, &gin[1][0]);
  split->PartBackwardInput(1, nullptr, &gin[1][1]);  // both inputs before either weight half
  EXPECT_EQ(calls, 0) << "the input half reports nothing";
  split->PartBackwardWeight(0);
  split->PartBackwardWeight(1);
  for (int m = 0; m < 2; ++m) {
    EXPECT_EQ(std::memcmp(gin[0][m].raw(), gin[1][m].raw(), gin[0][m].nbytes()), 0) << "grad_input " << m;
  }
  for (size_t i = 0; i < split->params().size(); ++i) {
    const Param& a = plain->params()[i];
    const Param& b = split->params()[i];
    EXPECT_EQ(std::memcmp(a.grad.raw(), b.grad.raw(), a.grad.nbytes()), 0) << a.name;
    EXPECT_EQ(reported[i], 2) << a.name;
  }
}

TEST(ModelSlice, HookReportsLayersInBackwardOrder) {
  auto m = Model::Create(Tiny(false), DType::kF32);
  ASSERT_TRUE(m.ok());
  m->Init(3);
  std::vector<std::pair<int, int>> calls;
  m->SetGradReadyHook([&](int first, int end) { calls.push_back({first, end}); });
  RecomputeConfig rc;
  m->ForwardBackward(Ids(2, 4, 1), Ids(2, 4, 2), 0.1, rc);
  const int n = static_cast<int>(m->params().size());
  ASSERT_EQ(calls.size(), 5u);  // head, layers 2, 1, 0, embedding
  EXPECT_EQ(calls.front().second, n);
  EXPECT_EQ(m->params()[calls.front().first].name, "final_norm");
  EXPECT_EQ(calls.back(), std::make_pair(0, 1));
  for (size_t k = 1; k + 1 < calls.size(); ++k) EXPECT_EQ(calls[k].second, calls[k - 1].first) << k;
  EXPECT_EQ(calls[calls.size() - 2].first, 1);
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
