// GPU parity over the op table, in the spirit of ggml's test-backend-ops:
// for every op of BATON_OP_LIST (runtime/op_table.h) one case runs it on
// CUDA and on the CPU reference, on fresh random inputs (never zeros) of
// several shapes (fixed odd ones and one drawn per run), in f32 and bf16,
// and compares the outputs. bf16 inputs are rounded to bf16 on the CPU side
// first, so both sides see the same values and the tolerance covers fp32
// reordering plus the final rounding of bf16 outputs:
//   |got − ref| <= atol + rtol·|ref|, f32: 1e-5, 1e-5; bf16: 1e-2, 1e-2
//   (bf16 keeps 8 significant bits, 3.9e-3 per rounding); an output summed
//   over k terms gets atol + k·2e-6 (fp32 reordering grows ~k·eps·|terms|).
// OpParityTable.EveryCudaOpHasACase needs no GPU: an op that gains a CUDA kernel
// without a case here fails it, so no op skips the parity test. The cases
// skip cleanly without a GPU and compile to one skip without CUDA. The
// GEMM, norm, RoPE and attention cases are here, the others in
// op_parity_pointwise.h, the helpers in op_parity_util.h.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/op_table.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "tests/kernels/op_parity_pointwise.h"
#include "tests/kernels/op_parity_util.h"

namespace baton {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using ops::OpId;
using namespace testing::parity;  // NOLINT: the cases and their helpers

// ---- GEMM

AssertionResult MatMulCase(DType t, std::mt19937_64& rng) {
  const std::array<int64_t, 3> shapes[] = {
      {1, 19, 111}, {19, 989, 1}, {111, 1, 989}, {Drawn(rng, 2, 300), Drawn(rng, 2, 300), Drawn(rng, 2, 300)}};
  for (auto [m, n, k] : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Tensor a = Input(ta ? Shape{k, m} : Shape{m, k}, t, rng), b = Input(tb ? Shape{n, k} : Shape{k, n}, t, rng);
        Tensor c = Input({m, n}, kF32, rng), cd = ToDevice(c, kF32);  // f32 accumulator, beta = 1
        PARITY_OK(ops::MatMul(a, ta, b, tb, c, 0.5f, 1.0f));
        PARITY_OK(ops::MatMul(ToDevice(a, t), ta, ToDevice(b, t), tb, cd, 0.5f, 1.0f));
        PARITY_CHECK(AllClose(ToHost(cd), c, Tol(kF32, k), At("MatMul c", t, m, n, k, ta, tb)));
      }
  return AssertionSuccess();
}

AssertionResult LinearCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 300)})
    for (int64_t in : {19, 64})
      for (int64_t out : {1, 111}) {
        Tensor x = Input({n, in}, t, rng), w = Input({out, in}, t, rng), b = Input({out}, t, rng);
        Tensor y = Host({n, out}), yd = Dev({n, out}, t);
        PARITY_OK(ops::Linear(x, w, &b, y));
        const Tensor bd = ToDevice(b, t);
        PARITY_OK(ops::Linear(ToDevice(x, t), ToDevice(w, t), &bd, yd));
        PARITY_CHECK(AllClose(ToHost(yd), y, Tol(t, in), At("Linear y", t, n, in, out)));
      }
  return AssertionSuccess();
}

AssertionResult LinearBackwardCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 300)})
    for (int64_t in : {19, 64})
      for (int64_t out : {1, 111})
        for (bool acc : {false, true}) {
          Tensor x = Input({n, in}, t, rng), w = Input({out, in}, t, rng), dy = Input({n, out}, t, rng);
          Tensor dx = Input({n, in}, t, rng), dw = Input({out, in}, kF32, rng), db = Input({out}, kF32, rng);
          Tensor dxd = ToDevice(dx, t), dwd = ToDevice(dw, kF32), dbd = ToDevice(db, kF32);
          PARITY_OK(ops::LinearBackward(dy, x, w, &dx, &dw, &db, acc));
          PARITY_OK(ops::LinearBackward(ToDevice(dy, t), ToDevice(x, t), ToDevice(w, t), &dxd, &dwd, &dbd, acc));
          PARITY_CHECK(AllClose(ToHost(dxd), dx, Tol(t, out), At("LinearBackward dx", t, n, in, out, acc)));
          PARITY_CHECK(AllClose(ToHost(dwd), dw, Tol(kF32, n), At("LinearBackward dw", t, n, in, out)));
          PARITY_CHECK(AllClose(ToHost(dbd), db, Tol(kF32, n), At("LinearBackward db", t, n, in, out)));
        }
  return AssertionSuccess();
}

// ---- RMSNorm

constexpr int64_t kNormWidths[] = {1, 19, 768, 989, 2056};

AssertionResult RmsNormCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 300)})
    for (int64_t c : kNormWidths) {
      Tensor x = Input({n, c}, t, rng), w = Input({c}, t, rng);
      Tensor y = Host({n, c}), r = Host({n}), yd = Dev({n, c}, t), rd = Dev({n}, kF32);
      PARITY_OK(ops::RmsNorm(x, w, 1e-5f, y, r));
      PARITY_OK(ops::RmsNorm(ToDevice(x, t), ToDevice(w, t), 1e-5f, yd, rd));
      PARITY_CHECK(AllClose(ToHost(yd), y, Tol(t), At("RmsNorm y", t, n, c)));
      PARITY_CHECK(AllClose(ToHost(rd), r, kStat, At("RmsNorm rstd", t, n, c)));
    }
  return AssertionSuccess();
}

AssertionResult AddRmsNormCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 300)})
    for (int64_t c : kNormWidths) {
      Tensor a = Input({n, c}, t, rng), b = Input({n, c}, t, rng), w = Input({c}, t, rng);
      Tensor sum = Host({n, c}), y = Host({n, c}), r = Host({n});
      PARITY_OK(ops::Add(a, b, sum));
      const Tensor sum_t = t == kF32 ? sum : RoundBf16(sum);  // what the device stores and normalises
      PARITY_OK(ops::RmsNorm(sum_t, w, 1e-5f, y, r));
      Tensor sd = Dev({n, c}, t), yd = Dev({n, c}, t), rd = Dev({n}, kF32);
      PARITY_OK(ops::AddRmsNorm(ToDevice(a, t), ToDevice(b, t), ToDevice(w, t), 1e-5f, sd, yd, rd));
      PARITY_CHECK(AllClose(ToHost(sd), sum_t, Tol(t), At("AddRmsNorm sum", t, n, c)));
      PARITY_CHECK(AllClose(ToHost(yd), y, Tol(t), At("AddRmsNorm y", t, n, c)));
      PARITY_CHECK(AllClose(ToHost(rd), r, kStat, At("AddRmsNorm rstd", t, n, c)));
    }
  return AssertionSuccess();
}

AssertionResult RmsNormBackwardCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 300)})
    for (int64_t c : kNormWidths)
      for (bool with_dres : {false, true}) {
        Tensor x = Input({n, c}, t, rng), w = Input({c}, t, rng), dy = Input({n, c}, t, rng);
        Tensor dres = Input({n, c}, t, rng), y = Host({n, c}), r = Host({n});
        PARITY_OK(ops::RmsNorm(x, w, 1e-5f, y, r));  // the same rstd on both sides
        Tensor dx = Host({n, c}), dw = Input({c}, kF32, rng);
        Tensor dxd = Dev({n, c}, t), dwd = ToDevice(dw, kF32), dresd = ToDevice(dres, t);
        PARITY_OK(ops::RmsNormBackward(dy, x, w, r, dx, dw, with_dres ? &dres : nullptr));
        PARITY_OK(ops::RmsNormBackward(ToDevice(dy, t), ToDevice(x, t), ToDevice(w, t), ToDevice(r, kF32), dxd, dwd,
                                       with_dres ? &dresd : nullptr));
        const Tolerance dx_tol{Tol(t).atol + 2e-6 * std::sqrt(static_cast<double>(c)), Tol(t).rtol};
        PARITY_CHECK(AllClose(ToHost(dxd), dx, dx_tol, At("RmsNormBackward dx", t, n, c, with_dres)));
        PARITY_CHECK(AllClose(ToHost(dwd), dw, Tol(kF32, n), At("RmsNormBackward dw", t, n, c)));
      }
  return AssertionSuccess();
}

// ---- RoPE: unscaled, Llama 3.1 (original_max 256, so T = 989 spans all
// three bands) and linear scaling.

std::vector<RopeParams> RopeVariants() {
  RopeParams llama3{500000.0, {}}, linear{10000.0, {}};
  llama3.scaling = {RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 256};
  linear.scaling = {RopeScaling::Type::kLinear, 4.0, 1.0, 4.0, 8192};
  return {RopeParams{10000.0, {}}, llama3, linear};
}

AssertionResult RopeCase(DType t, std::mt19937_64& rng, bool backward) {
  for (const RopeParams& p : RopeVariants())
    for (const Shape& s : {Shape{1, 1, 1, 2}, Shape{2, 19, 3, 64}, Shape{1, 989, 2, 128},
                           Shape{1, Drawn(rng, 2, 300), 3, 2 * Drawn(rng, 1, 64)}}) {
      Tensor x = Input(s, t, rng), xd = ToDevice(x, t);
      PARITY_OK(backward ? ops::RopeBackward(x, p) : ops::Rope(x, p));
      PARITY_OK(backward ? ops::RopeBackward(xd, p) : ops::Rope(xd, p));
      PARITY_CHECK(AllClose(ToHost(xd), x, Tol(t), At(backward ? "RopeBackward" : "Rope", t, ShapeString(s),
                                                      static_cast<int>(p.scaling.type))));
    }
  return AssertionSuccess();
}
AssertionResult RopeForwardCase(DType t, std::mt19937_64& rng) { return RopeCase(t, rng, false); }
AssertionResult RopeBackwardCase(DType t, std::mt19937_64& rng) { return RopeCase(t, rng, true); }

// ---- Attention (whichever backend the build picks for the shape: cuDNN or
// our FlashAttention-2 kernels; cuda_backend_gpu_test forces each).

struct AttnShape {
  int64_t b, t, h, kv, d;
};
std::vector<AttnShape> AttnShapes(std::mt19937_64& rng) {
  return {{1, 1, 1, 1, 8},     {2, 19, 4, 2, 64},  {1, 111, 6, 2, 128}, {1, 1, 2, 1, 64},
          {2, 111, 4, 4, 64},  {1, 989, 2, 1, 128}, {1, Drawn(rng, 2, 400), 4, 2, 64}};
}

AssertionResult AttentionCase(DType t, std::mt19937_64& rng) {
  for (const AttnShape& s : AttnShapes(rng)) {
    Tensor q = Input({s.b, s.t, s.h, s.d}, t, rng), k = Input({s.b, s.t, s.kv, s.d}, t, rng),
           v = Input({s.b, s.t, s.kv, s.d}, t, rng);
    Tensor out = Host(q.shape()), lse = Host({s.b, s.h, s.t});
    Tensor outd = Dev(q.shape(), t), lsed = Dev({s.b, s.h, s.t}, kF32);
    PARITY_OK(ops::Attention(q, k, v, out, lse, nullptr));
    PARITY_OK(ops::Attention(ToDevice(q, t), ToDevice(k, t), ToDevice(v, t), outd, lsed, nullptr));
    PARITY_CHECK(AllClose(ToHost(outd), out, Tol(t), At("Attention out", t, s.b, s.t, s.h, s.kv, s.d)));
    PARITY_CHECK(AllClose(ToHost(lsed), lse, kStat, At("Attention lse", t, s.b, s.t, s.h, s.kv, s.d)));
  }
  return AssertionSuccess();
}

// From the same (out, lse) on both sides, out rounded like the device's; a
// second backward must give the same bits (no atomics in the reduction).
AssertionResult AttentionBackwardCase(DType t, std::mt19937_64& rng) {
  for (const AttnShape& s : AttnShapes(rng)) {
    Tensor q = Input({s.b, s.t, s.h, s.d}, t, rng), k = Input({s.b, s.t, s.kv, s.d}, t, rng),
           v = Input({s.b, s.t, s.kv, s.d}, t, rng), dout = Input(q.shape(), t, rng);
    Tensor out = Host(q.shape()), lse = Host({s.b, s.h, s.t});
    PARITY_OK(ops::Attention(q, k, v, out, lse, nullptr));
    if (t != kF32) out = RoundBf16(out);
    Tensor dq = Host(q.shape()), dk = Host(k.shape()), dv = Host(v.shape());
    PARITY_OK(ops::AttentionBackward(dout, q, k, v, out, lse, nullptr, dq, dk, dv));
    const Tensor qd = ToDevice(q, t), kd = ToDevice(k, t), vd = ToDevice(v, t), doutd = ToDevice(dout, t);
    const Tensor outd = ToDevice(out, t), lsed = ToDevice(lse, kF32);
    Tensor dqd = Dev(q.shape(), t), dkd = Dev(k.shape(), t), dvd = Dev(v.shape(), t);
    PARITY_OK(ops::AttentionBackward(doutd, qd, kd, vd, outd, lsed, nullptr, dqd, dkd, dvd));
    const Tolerance tol = t == kF32 ? Tolerance{2e-6 * s.t + 1e-5, 1e-4} : Tolerance{2e-2, 2e-2};
    const std::string where = At("", t, s.b, s.t, s.h, s.kv, s.d);
    PARITY_CHECK(AllClose(ToHost(dqd), dq, tol, "AttentionBackward dq" + where));
    PARITY_CHECK(AllClose(ToHost(dkd), dk, tol, "AttentionBackward dk" + where));
    PARITY_CHECK(AllClose(ToHost(dvd), dv, tol, "AttentionBackward dv" + where));
    Tensor dq2 = Dev(q.shape(), t), dk2 = Dev(k.shape(), t), dv2 = Dev(v.shape(), t);
    PARITY_OK(ops::AttentionBackward(doutd, qd, kd, vd, outd, lsed, nullptr, dq2, dk2, dv2));
    PARITY_CHECK(AllClose(ToHost(dq2), ToHost(dqd), {0, 0}, "AttentionBackward dq rerun" + where));
    PARITY_CHECK(AllClose(ToHost(dk2), ToHost(dkd), {0, 0}, "AttentionBackward dk rerun" + where));
  }
  return AssertionSuccess();
}

// ---- The case table: one entry per op of BATON_OP_LIST with a CUDA kernel.

using CaseFn = AssertionResult (*)(DType, std::mt19937_64&);
struct ParityCase {
  OpId op;
  CaseFn run;
};

constexpr ParityCase kCases[] = {
    {OpId::kMatMul, MatMulCase},
    {OpId::kLinear, LinearCase},
    {OpId::kLinearBackward, LinearBackwardCase},
    {OpId::kRmsNorm, RmsNormCase},
    {OpId::kAddRmsNorm, AddRmsNormCase},
    {OpId::kRmsNormBackward, RmsNormBackwardCase},
    {OpId::kRope, RopeForwardCase},
    {OpId::kRopeBackward, RopeBackwardCase},
    {OpId::kAttention, AttentionCase},
    {OpId::kAttentionBackward, AttentionBackwardCase},
    {OpId::kSwiGlu, SwiGluForwardCase},
    {OpId::kSwiGluBackward, SwiGluBackwardCase},
    {OpId::kEmbedding, EmbeddingForwardCase},
    {OpId::kEmbeddingBackward, EmbeddingBackwardCase},
    {OpId::kSoftmaxCrossEntropy, SoftmaxCrossEntropyCase},
    {OpId::kRowMax, RowMaxCase},
    {OpId::kRowSumExp, RowSumExpCase},
    {OpId::kPickTargets, PickTargetsCase},
    {OpId::kVocabParallelCrossEntropy, VocabLossCase},
    {OpId::kAdd, AddCase},
    {OpId::kAddInPlace, AddInPlaceCase},
    {OpId::kScale, ScaleCase},
    {OpId::kSumSquares, SumSquaresCase},
    {OpId::kSum, SumCase},
    {OpId::kConvert, ConvertCase},
    {OpId::kAdamW, AdamWCase},
};

const ParityCase* FindCase(OpId op) {
  for (const ParityCase& c : kCases)
    if (c.op == op) return &c;
  return nullptr;
}

// No GPU needed: every op the CUDA table has a kernel for has a case; the
// others are CPU-only by the table's own declaration (a null entry).
TEST(OpParityTable, EveryCudaOpHasACase) {
  for (int i = 0; i < ops::kNumOps; ++i) {
    const auto op = static_cast<OpId>(i);
    if (!ops::HasKernel(Device::kCuda, op)) continue;  // CPU-only: Unimplemented on CUDA (op_table_test)
    EXPECT_NE(FindCase(op), nullptr) << ops::OpName(op) << " has a CUDA kernel but no parity case";
  }
}

// No GPU needed: the checker fails one budget past its tolerance.
TEST(OpParityTable, CheckerCatchesAPerturbation) {
  std::mt19937_64 rng(3);
  for (DType t : {kF32, DType::kBF16}) {
    const Tensor ref = Input({19, 111}, t, rng);
    Tensor got = ref.Clone();
    ASSERT_TRUE(AllClose(got, ref, Tol(t)));
    const float r = ref.data<float>()[7 * 111 + 5];
    got.data<float>()[7 * 111 + 5] = r + 1.5f * static_cast<float>(Tol(t).atol + Tol(t).rtol * std::fabs(r));
    EXPECT_FALSE(AllClose(got, ref, Tol(t))) << DTypeName(t);
  }
}

// Every op x {f32, bf16}, named "MatMul/bf16".
class OpParity : public ::testing::TestWithParam<std::tuple<int, DType>> {};

TEST_P(OpParity, CudaMatchesCpu) {
  const auto op = static_cast<OpId>(std::get<0>(GetParam()));
  const DType t = std::get<1>(GetParam());
  const ParityCase* c = FindCase(op);
  if (c == nullptr) {
    ASSERT_FALSE(ops::HasKernel(Device::kCuda, op)) << ops::OpName(op) << ": a CUDA kernel without a case";
    GTEST_SKIP() << ops::OpName(op) << " is CPU-only";
  }
  REQUIRE_GPU();
  std::mt19937_64 rng(0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(std::get<0>(GetParam()) * 2 + (t == kF32)));
  EXPECT_TRUE(c->run(t, rng));
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpParity,
                         ::testing::Combine(::testing::Range(0, ops::kNumOps),
                                            ::testing::Values(DType::kF32, DType::kBF16)),
                         [](const auto& info) {
                           return absl::StrCat(ops::OpName(static_cast<OpId>(std::get<0>(info.param))), "_",
                                               DTypeName(std::get<1>(info.param)));
                         });

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(OpParity, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
