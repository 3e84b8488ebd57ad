// GPU parity of the vocab-parallel cross-entropy pieces (RowMax, RowSumExp,
// PickTargets, VocabParallelCrossEntropy; kernels/cuda/vocab_parallel_ce.h)
// against the CPU kernels of runtime/ops_vocab_parallel.cc on random
// logits of odd and aligned shapes (N 1, 19, 111; V_local 1, 989, 16000),
// f32 and bf16 logits (rounded to bf16 on the CPU side first, so both see
// the same values), targets in this shard, in other shards and ignored.
// Each kernel is fed the CPU's inputs, so errors do not compound; a last
// check chains the GPU kernels alone. Tolerances (|got − ref| <=
// atol + rtol·|ref|):
//   max, target logit: exact (a max and a pick of the same values);
//   sum of exp: rtol 2e-5 (f32 sums of ≤ 16000 terms in ≤ 1: ~(v/256 + 8)·eps
//     on the GPU's strided-then-tree order, vs the CPU's double sum);
//   loss: atol 2e-5, rtol 1e-5 (log of that sum, plus max − target);
//   dlogits: f32 atol 1e-6, rtol 2e-5; bf16 atol 1e-6, rtol 8e-3 (one bf16
//     rounding is 2^-9 relative, plus the f32 error above).
// Skips with "no GPU" where CudaDeviceCount() == 0; compiles to a skip
// without BATON_HAVE_CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cpu/convert.h"
#include "runtime/cuda_allocator.h"
#include "tests/kernels/gpu_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::RandomTensor;
using testing::Tolerance;
using testing::RoundBf16;
using testing::ToDevice;
using testing::ToHost;


constexpr Tolerance kExact{0, 0};
constexpr Tolerance kSum{0, 2e-5};
constexpr Tolerance kLoss{2e-5, 1e-5};
Tolerance GradTol(DType t) { return t == DType::kF32 ? Tolerance{1e-6, 2e-5} : Tolerance{1e-6, 8e-3}; }

Tensor DeviceF32(int64_t n) { return Tensor::Empty({n}, DType::kF32, DefaultCudaAllocator()); }

// Logits of shard `shard` of 3 (vocab_start = shard·v); targets over the
// whole vocabulary 3·v, every fifth row ignored (−1), row 0 always in this
// shard so every shape has a hit.
struct Case {
  int64_t n, v, vocab_start;
  Tensor logits;   // (n, v) f32, rounded to what the dtype holds
  Tensor targets;  // (n) i32
};
Case MakeCase(int64_t n, int64_t v, DType t, std::mt19937_64& rng) {
  Case c{n, v, v, {}, {}};
  Tensor x = RandomTensor({n, v}, DType::kF32, rng, 0.05, 6.0);
  c.logits = t == DType::kBF16 ? RoundBf16(x) : x;
  c.targets = Tensor::Empty({n}, DType::kI32);
  std::uniform_int_distribution<int64_t> id(0, 3 * v - 1);
  for (int64_t r = 0; r < n; ++r) {
    int64_t target = r % 5 == 4 ? -1 : id(rng);
    if (r == 0) target = c.vocab_start + (v - 1) / 2;
    c.targets.data<int32_t>()[r] = static_cast<int32_t>(target);
  }
  return c;
}

std::string Name(const char* what, const Case& c, DType t) {
  return std::string(what) + " n=" + std::to_string(c.n) + " v=" + std::to_string(c.v) + " " + DTypeName(t);
}

class VocabParallelCe : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, VocabParallelCe, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST_P(VocabParallelCe, EveryPieceMatchesTheCpuKernel) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(7);
  for (int64_t n : {1, 19, 111}) {
    for (int64_t v : {1, 989, 16000}) {
      Case c = MakeCase(n, v, t, rng);
      // CPU reference on the same values.
      Tensor max = Tensor::Empty({n}, DType::kF32), sum = Tensor::Empty({n}, DType::kF32),
             target = Tensor::Empty({n}, DType::kF32), losses = Tensor::Empty({n}, DType::kF32);
      Tensor dlogits = Tensor::Empty({n, v}, DType::kF32);
      const float scale = 0.37f;
      ops::RowMax(c.logits, max);
      ops::RowSumExp(c.logits, max, sum);
      ops::PickTargets(c.logits, c.targets, c.vocab_start, target);
      ops::VocabParallelCrossEntropy(c.logits, c.targets, c.vocab_start, max, sum, target, losses, &dlogits, scale);

      Tensor x = ToDevice(c.logits, t), tg = ToDevice(c.targets, DType::kI32);
      Tensor max_d = DeviceF32(n), sum_d = DeviceF32(n), target_d = DeviceF32(n), losses_d = DeviceF32(n);
      ops::RowMax(x, max_d);
      ASSERT_TRUE(AllClose(ToHost(max_d), max, kExact, Name("RowMax", c, t)));
      ops::RowSumExp(x, ToDevice(max, DType::kF32), sum_d);
      ASSERT_TRUE(AllClose(ToHost(sum_d), sum, kSum, Name("RowSumExp", c, t)));
      ops::PickTargets(x, tg, c.vocab_start, target_d);
      ASSERT_TRUE(AllClose(ToHost(target_d), target, kExact, Name("PickTargets", c, t)));
      // The loss and gradient from the CPU's statistics; out of place, then in place as the model runs it.
      Tensor dx = Tensor::Empty({n, v}, t, DefaultCudaAllocator());
      ops::VocabParallelCrossEntropy(x, tg, c.vocab_start, ToDevice(max, DType::kF32), ToDevice(sum, DType::kF32),
                                     ToDevice(target, DType::kF32), losses_d, &dx, scale);
      ASSERT_TRUE(AllClose(ToHost(losses_d), losses, kLoss, Name("VocabParallelCrossEntropy loss", c, t)));
      ASSERT_TRUE(AllClose(ToHost(dx), dlogits, GradTol(t), Name("VocabParallelCrossEntropy dlogits", c, t)));
      ops::VocabParallelCrossEntropy(x, tg, c.vocab_start, ToDevice(max, DType::kF32), ToDevice(sum, DType::kF32),
                                     ToDevice(target, DType::kF32), losses_d, &x, scale);
      ASSERT_TRUE(AllClose(ToHost(x), dlogits, GradTol(t), Name("VocabParallelCrossEntropy in place", c, t)));
      // Ignored rows: loss 0 and a zero gradient row, exactly.
      const Tensor dx_host = ToHost(dx), l_host = ToHost(losses_d);
      for (int64_t r = 0; r < n; ++r) {
        if (c.targets.data<int32_t>()[r] >= 0) continue;
        ASSERT_EQ(l_host.data<float>()[r], 0.f) << Name("ignored row loss", c, t) << " row " << r;
        for (int64_t j = 0; j < v; ++j) ASSERT_EQ(dx_host.data<float>()[r * v + j], 0.f) << "row " << r;
      }
    }
  }
}

// The GPU kernels chained alone (what the model runs at tp = 1 per shard)
// give the CPU losses; no losses without the loss-only call's null dlogits.
TEST_P(VocabParallelCe, GpuChainMatchesCpuLosses) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(8);
  for (int64_t n : {19, 111}) {
    for (int64_t v : {989, 16000}) {
      Case c = MakeCase(n, v, t, rng);
      Tensor max = Tensor::Empty({n}, DType::kF32), sum = Tensor::Empty({n}, DType::kF32),
             target = Tensor::Empty({n}, DType::kF32), losses = Tensor::Empty({n}, DType::kF32);
      ops::RowMax(c.logits, max);
      ops::RowSumExp(c.logits, max, sum);
      ops::PickTargets(c.logits, c.targets, c.vocab_start, target);
      ops::VocabParallelCrossEntropy(c.logits, c.targets, c.vocab_start, max, sum, target, losses, nullptr, 1.0f);
      Tensor x = ToDevice(c.logits, t), tg = ToDevice(c.targets, DType::kI32);
      Tensor max_d = DeviceF32(n), sum_d = DeviceF32(n), target_d = DeviceF32(n), losses_d = DeviceF32(n);
      ops::RowMax(x, max_d);
      ops::RowSumExp(x, max_d, sum_d);
      ops::PickTargets(x, tg, c.vocab_start, target_d);
      ops::VocabParallelCrossEntropy(x, tg, c.vocab_start, max_d, sum_d, target_d, losses_d, nullptr, 1.0f);
      ASSERT_TRUE(AllClose(ToHost(losses_d), losses, kLoss, Name("chained loss", c, t)));
    }
  }
}

// Negative tests: each checker above fails one tolerance step past its budget.
TEST(VocabParallelCeCheckers, FailOneStepPastTheirTolerance) {
  REQUIRE_GPU();
  std::mt19937_64 rng(9);
  Case c = MakeCase(19, 989, DType::kF32, rng);
  Tensor max = Tensor::Empty({19}, DType::kF32), sum = Tensor::Empty({19}, DType::kF32);
  ops::RowMax(c.logits, max);
  ops::RowSumExp(c.logits, max, sum);
  Tensor x = ToDevice(c.logits, DType::kF32), max_d = DeviceF32(19), sum_d = DeviceF32(19);
  ops::RowMax(x, max_d);
  ops::RowSumExp(x, max_d, sum_d);
  Tensor got_max = ToHost(max_d), got_sum = ToHost(sum_d);
  ASSERT_TRUE(AllClose(got_max, max, kExact, "max"));
  ASSERT_TRUE(AllClose(got_sum, sum, kSum, "sum"));
  got_max.data<float>()[7] = std::nextafter(got_max.data<float>()[7], INFINITY);
  EXPECT_FALSE(AllClose(got_max, max, kExact, "max one ulp off"));
  got_sum.data<float>()[3] = sum.data<float>()[3] * static_cast<float>(1 + 3 * kSum.rtol);
  EXPECT_FALSE(AllClose(got_sum, sum, kSum, "sum 3 budgets off"));
  Tensor loss = Tensor::Empty({1}, DType::kF32), loss_ref = Tensor::Empty({1}, DType::kF32);
  loss_ref.data<float>()[0] = 5.0f;
  loss.data<float>()[0] = 5.0f + static_cast<float>(2 * (kLoss.atol + kLoss.rtol * 5.0));
  EXPECT_FALSE(AllClose(loss, loss_ref, kLoss, "loss 2 budgets off"));
  loss.data<float>()[0] = 5.0f * static_cast<float>(1 + 2 * GradTol(DType::kBF16).rtol);
  EXPECT_FALSE(AllClose(loss, loss_ref, GradTol(DType::kBF16), "bf16 grad 2 budgets off"));
}

}  // namespace
}  // namespace baton

#else  // no CUDA in this build

TEST(VocabParallelCe, NeedsCudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif
