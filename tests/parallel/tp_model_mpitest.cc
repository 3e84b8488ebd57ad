// Tensor parallelism inside the model (runtime/model.h), under mpiexec -n 2
// and 4: every tp rank's model holds exactly its slice of the single-rank
// model's initial weights, returns the same loss, and its parameter
// gradients equal the matching slice of the single-rank gradients (f64,
// relative 1e-10), with and without sequence parallelism, tied and untied,
// with qkv biases, under recompute none and full. The grad-ready hook
// covers every param once per micro-batch.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/mpi_communicator.h"
#include "parallel/tp_collectives.h"
#include "runtime/model.h"

namespace baton {
namespace {

ModelConfig Config(bool tied) {
  ModelConfig c;
  c.layers = 2;
  c.dim = 32;
  c.heads = 8;
  c.kv_heads = 4;
  c.ffn_dim = 48;
  c.vocab_size = 20;
  c.qkv_bias = true;
  c.tie_embeddings = tied;
  return c;
}

Tensor Ids(int64_t b, int64_t t, int salt) {
  Tensor x = Tensor::Empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>((i * 7 + salt) % 20);
  return x;
}

// The slice of `full` a param holds.
Tensor SliceOf(const Tensor& full, const Param& p) {
  if (p.shard_dim < 0) return full;
  Tensor out = Tensor::Empty(p.value.shape(), DType::kF64);
  const int64_t rows = full.dim(0), cols = full.rank() > 1 ? full.dim(1) : 1;
  const int64_t out_cols = out.rank() > 1 ? out.dim(1) : 1;
  for (int64_t r = 0; r < out.dim(0); ++r) {
    for (int64_t c = 0; c < out_cols; ++c) {
      const int64_t fr = p.shard_dim == 0 ? r + p.shard_offset : r;
      const int64_t fc = p.shard_dim == 1 ? c + p.shard_offset : c;
      EXPECT_LT(fr, rows);
      out.data<double>()[r * out_cols + c] = full.data<double>()[fr * cols + fc];
    }
  }
  return out;
}

double MaxAbs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.data<double>()[i]));
  return m;
}

double MaxDiff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.data<double>()[i] - b.data<double>()[i]));
  return m;
}

class TpModelTest : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {};

TEST_P(TpModelTest, SlicesOfTheSingleRankModel) {
  const auto [sp, tied, full_recompute] = GetParam();
  auto comm = MpiCommunicator::Dup(MPI_COMM_WORLD, "tp");
  ASSERT_TRUE(comm.ok());
  CommTpCollectives coll(**comm);
  const int n = coll.size(), r = coll.rank();
  const ModelConfig c = Config(tied);
  RecomputeConfig rc;
  rc.policy = full_recompute ? RecomputePolicy::kFull : RecomputePolicy::kNone;
  auto whole = Model::Create(c, DType::kF64);
  auto part = Model::Create(c, DType::kF64, Device::kCpu, {}, TensorParallel{n, r, &coll, sp});
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(part.ok()) << part.status();
  whole->Init(11);
  part->Init(11);
  std::vector<int> reported(part->params().size(), 0);
  part->SetGradReadyHook([&](int first, int end) {
    for (int i = first; i < end; ++i) ++reported[i];
  });
  double want = 0, got = 0;
  for (int mb = 0; mb < 2; ++mb) {  // two micro-batches: grads accumulate
    const Tensor tok = Ids(2, 6, mb), tgt = Ids(2, 6, mb + 3);
    want += whole->ForwardBackward(tok, tgt, 0.05, rc);
    got += part->ForwardBackward(tok, tgt, 0.05, rc);
  }
  ASSERT_TRUE(part->comm_status().ok()) << part->comm_status();
  EXPECT_NEAR(got, want, 1e-10 * std::abs(want));
  ASSERT_EQ(part->params().size(), whole->params().size());
  for (size_t i = 0; i < part->params().size(); ++i) {
    Param& p = part->params()[i];
    const Param& w = whole->params()[i];
    ASSERT_EQ(p.name, w.name);
    EXPECT_EQ(p.full_shape, w.value.shape()) << p.name;
    EXPECT_EQ(MaxDiff(p.value, SliceOf(w.value, p)), 0.0) << p.name << ": init is not the slice";
    Tensor g = p.grad.Clone();
    if (p.tp_sum_grad) ASSERT_TRUE((*comm)->AllReduceSum(g).ok());
    const Tensor want_g = SliceOf(w.grad, p);
    EXPECT_LE(MaxDiff(g, want_g), 1e-10 * std::max(1.0, MaxAbs(want_g))) << p.name;
    EXPECT_EQ(p.tp_sum_grad, sp && p.shard_dim < 0) << p.name;
    EXPECT_EQ(reported[i], 2) << p.name;
  }
  // Forward only agrees too.
  EXPECT_NEAR(part->Loss(Ids(2, 6, 5), Ids(2, 6, 1)), whole->Loss(Ids(2, 6, 5), Ids(2, 6, 1)), 1e-10 * want);
}

INSTANTIATE_TEST_SUITE_P(Layouts, TpModelTest, ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "Sp" : "NoSp") +
                                  (std::get<1>(info.param) ? "Tied" : "Untied") +
                                  (std::get<2>(info.param) ? "Full" : "None");
                         });

TEST(TpModel, MeshesThatDoNotDivideAreRefused) {
  auto comm = MpiCommunicator::Dup(MPI_COMM_WORLD, "tp");
  ASSERT_TRUE(comm.ok());
  CommTpCollectives coll(**comm);
  if (coll.size() == 1) GTEST_SKIP() << "needs 2+ ranks";
  ModelConfig c = Config(true);
  c.vocab_size = 21;
  auto m = Model::Create(c, DType::kF32, Device::kCpu, {}, TensorParallel{coll.size(), coll.rank(), &coll, false});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.status().message(), "parallel.tp=" + std::to_string(coll.size()) + " does not divide model.vocab_size=21");
}

}  // namespace
}  // namespace baton
