// GPU parity: every CUDA op of the op table against the CPU reference on
// fresh random inputs (never zeros) of many shapes, odd ones included.
// bf16 inputs are rounded to bf16 on the CPU side first, so both sides see
// the same values and the tolerance only covers fp32 reordering plus the
// final rounding of bf16 outputs.
// Tolerances (|got − ref| <= atol + rtol·|ref|):
//   f32 outputs: rtol 1e-5, atol 1e-5 for O(1) values; sums over k terms
//     (GEMM, dw, attention) get atol ~ k·2e-6 (fp32 reordering grows ~k·eps·|terms|);
//   bf16 outputs: rtol 1e-2, atol 1e-2 (bf16 has 8 significant bits: 3.9e-3).
// Skips with "no GPU" where CudaDeviceCount() == 0; compiles to a skip
// without BATON_HAVE_CUDA.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cpu/convert.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/cudnn_check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#include "runtime/ops_cuda.h"
#include "tests/kernels/gpu_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::RandomTensor;
using testing::Tolerance;
using testing::Input;
using testing::RoundBf16;
using testing::ToDevice;
using testing::ToDeviceI32;
using testing::ToHost;


constexpr Tolerance kF32{1e-5, 1e-5};
constexpr Tolerance kBf16{1e-2, 1e-2};
Tolerance Tol(DType t) { return t == DType::kF32 ? kF32 : kBf16; }

class CudaOps : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, CudaOps, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST_P(CudaOps, MatMulAllTransposes) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(1);
  for (int64_t m : {1, 19, 111}) for (int64_t n : {1, 19, 989}) for (int64_t k : {1, 111, 989})
    for (bool ta : {false, true}) for (bool tb : {false, true}) {
      Tensor a = Input(ta ? Shape{k, m} : Shape{m, k}, t, rng);
      Tensor b = Input(tb ? Shape{n, k} : Shape{k, n}, t, rng);
      Tensor c = Input({m, n}, DType::kF32, rng);  // accumulate in f32: beta = 1
      Tensor dc = ToDevice(c, DType::kF32);
      ops::MatMul(a, ta, b, tb, c, 0.5f, 1.0f);
      ops::MatMul(ToDevice(a, t), ta, ToDevice(b, t), tb, dc, 0.5f, 1.0f);
      const Tolerance tol{2e-6 * k + 1e-5, 1e-5};
      ASSERT_TRUE(AllClose(ToHost(dc), c, tol, "MatMul"))
          << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb;
    }
}

// Autotuning times candidate algorithms on the call's own operands: the
// call must still add alpha·A·B to C exactly once (beta = 1), whichever
// algorithm wins. Shapes unused elsewhere in this binary, so each is tuned.
TEST_P(CudaOps, GemmAutotuneKeepsTheResult) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(11);
  cuda::SetGemmAutotune(true);
  for (int64_t m : {37, 1000}) for (int64_t n : {53, 1024}) for (int64_t k : {71, 2048}) {
    Tensor a = Input({m, k}, t, rng), b = Input({n, k}, t, rng);
    Tensor c = Input({m, n}, DType::kF32, rng);
    Tensor dc = ToDevice(c, DType::kF32);
    ops::MatMul(a, false, b, true, c, 1.0f, 1.0f);
    ops::MatMul(ToDevice(a, t), false, ToDevice(b, t), true, dc, 1.0f, 1.0f);
    EXPECT_TRUE(AllClose(ToHost(dc), c, {2e-6 * k + 1e-5, 1e-5}, "autotuned MatMul"))
        << m << "x" << n << "x" << k;
  }
  cuda::SetGemmAutotune(false);
}

TEST_P(CudaOps, LinearAndBackward) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(2);
  for (int64_t n : {1, 19, 111}) for (int64_t in : {19, 64}) for (int64_t out : {1, 111}) {
    Tensor x = Input({n, in}, t, rng), w = Input({out, in}, t, rng), b = Input({out}, t, rng);
    Tensor dy = Input({n, out}, t, rng);
    Tensor yc = Tensor::Empty({n, out}, DType::kF32);
    ops::Linear(x, w, &b, yc);
    Tensor dyd = ToDevice(dy, t), xd = ToDevice(x, t), wd = ToDevice(w, t), bd = ToDevice(b, t);
    Tensor yd = Tensor::Empty({n, out}, t, DefaultCudaAllocator());
    ops::Linear(xd, wd, &bd, yd);
    ASSERT_TRUE(AllClose(ToHost(yd), yc, {2e-6 * in + Tol(t).atol, Tol(t).rtol}, "Linear y"));
    // Backward: dx like x, dw and db accumulate in f32.
    Tensor dx = Tensor::Empty({n, in}, DType::kF32), dw = Input({out, in}, DType::kF32, rng),
           db = Input({out}, DType::kF32, rng);
    Tensor dxd = Tensor::Empty({n, in}, t, DefaultCudaAllocator());
    Tensor dwd = ToDevice(dw, DType::kF32), dbd = ToDevice(db, DType::kF32);
    ops::LinearBackward(dy, x, w, &dx, &dw, &db);
    ops::LinearBackward(dyd, xd, wd, &dxd, &dwd, &dbd);
    ASSERT_TRUE(AllClose(ToHost(dxd), dx, {2e-6 * out + Tol(t).atol, Tol(t).rtol}, "dx"));
    // accumulate_dx: dx += dy·w in the GEMM (beta = 1), from a nonzero start.
    Tensor dx0 = Input({n, in}, t, rng);
    Tensor dxa = dx0.Clone(), dxad = ToDevice(dx0, t);
    ops::LinearBackward(dy, x, w, &dxa, nullptr, nullptr, true);
    ops::LinearBackward(dyd, xd, wd, &dxad, nullptr, nullptr, true);
    ASSERT_TRUE(AllClose(ToHost(dxad), dxa, {2e-6 * out + Tol(t).atol, Tol(t).rtol}, "dx += dy·w"));
    ASSERT_TRUE(AllClose(ToHost(dwd), dw, {2e-6 * n + 1e-5, 1e-5}, "dw"));
    ASSERT_TRUE(AllClose(ToHost(dbd), db, {2e-6 * n + 1e-5, 1e-5}, "db"));
  }
}

TEST_P(CudaOps, RmsNormForwardBackward) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(3);
  for (int64_t n : {1, 19, 111, 989}) for (int64_t c : {1, 19, 768, 989, 2048, 2056}) {
    Tensor x = Input({n, c}, t, rng), w = Input({c}, t, rng), dy = Input({n, c}, t, rng);
    Tensor y = Tensor::Empty({n, c}, DType::kF32), rstd = Tensor::Empty({n}, DType::kF32);
    ops::RmsNorm(x, w, 1e-5f, y, rstd);
    Tensor xd = ToDevice(x, t), wd = ToDevice(w, t);
    Tensor yd = Tensor::Empty({n, c}, t, DefaultCudaAllocator());
    Tensor rd = Tensor::Empty({n}, DType::kF32, DefaultCudaAllocator());
    ops::RmsNorm(xd, wd, 1e-5f, yd, rd);
    ASSERT_TRUE(AllClose(ToHost(yd), y, Tol(t), "RmsNorm y")) << n << "x" << c;
    ASSERT_TRUE(AllClose(ToHost(rd), rstd, kF32, "RmsNorm rstd")) << n << "x" << c;
    Tensor dx = Tensor::Empty({n, c}, DType::kF32), dw = Input({c}, DType::kF32, rng);
    Tensor dxd = Tensor::Empty({n, c}, t, DefaultCudaAllocator()), dwd = ToDevice(dw, DType::kF32);
    ops::RmsNormBackward(dy, x, w, rstd, dx, dw);
    ops::RmsNormBackward(ToDevice(dy, t), xd, wd, rd, dxd, dwd);
    ASSERT_TRUE(AllClose(ToHost(dxd), dx, {Tol(t).atol + 2e-6 * std::sqrt(c), Tol(t).rtol}, "dx"))
        << n << "x" << c;
    ASSERT_TRUE(AllClose(ToHost(dwd), dw, {2e-6 * n + 1e-5, 1e-5}, "dw")) << n << "x" << c;
    // The residual's gradient fused into the same pass, aliasing dx on the device.
    Tensor dres = Input({n, c}, t, rng);
    Tensor dxr = Tensor::Empty({n, c}, DType::kF32), dwr = Tensor::Zeros({c}, DType::kF32);
    ops::RmsNormBackward(dy, x, w, rstd, dxr, dwr, &dres);
    Tensor dxrd = ToDevice(dres, t), dwrd = Tensor::Zeros({c}, DType::kF32, DefaultCudaAllocator());
    ops::RmsNormBackward(ToDevice(dy, t), xd, wd, rd, dxrd, dwrd, &dxrd);
    ASSERT_TRUE(AllClose(ToHost(dxrd), dxr, {Tol(t).atol + 2e-6 * std::sqrt(c), Tol(t).rtol}, "dx + dres"))
        << n << "x" << c;
  }
}

// The residual add fused into the norm: sum like Add, y and rstd like
// RmsNorm of that sum (packed rows and the two-kernel fallback for odd c).
TEST_P(CudaOps, AddRmsNormMatchesAddThenRmsNorm) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(12);
  for (int64_t n : {1, 19, 989}) for (int64_t c : {19, 768, 2048}) {
    Tensor a = Input({n, c}, t, rng), b = Input({n, c}, t, rng), w = Input({c}, t, rng);
    Tensor sum = Tensor::Empty({n, c}, DType::kF32), y = Tensor::Empty({n, c}, DType::kF32),
           rstd = Tensor::Empty({n}, DType::kF32);
    ops::Add(a, b, sum);
    Tensor sum_t = t == DType::kBF16 ? RoundBf16(sum) : sum;  // the device stores the rounded sum
    ops::RmsNorm(sum_t, w, 1e-5f, y, rstd);
    Tensor sd = Tensor::Empty({n, c}, t, DefaultCudaAllocator()), yd = Tensor::Empty({n, c}, t, DefaultCudaAllocator());
    Tensor rd = Tensor::Empty({n}, DType::kF32, DefaultCudaAllocator());
    ops::AddRmsNorm(ToDevice(a, t), ToDevice(b, t), ToDevice(w, t), 1e-5f, sd, yd, rd);
    ASSERT_TRUE(AllClose(ToHost(sd), sum_t, Tol(t), "AddRmsNorm sum")) << n << "x" << c;
    ASSERT_TRUE(AllClose(ToHost(yd), y, Tol(t), "AddRmsNorm y")) << n << "x" << c;
    ASSERT_TRUE(AllClose(ToHost(rd), rstd, {1e-5, 1e-5}, "AddRmsNorm rstd")) << n << "x" << c;
  }
}

TEST_P(CudaOps, RopeForwardAndInverse) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(4);
  for (Shape s : {Shape{1, 1, 1, 2}, Shape{2, 19, 3, 64}, Shape{1, 989, 2, 128}}) {
    Tensor x = Input(s, t, rng);
    Tensor xd = ToDevice(x, t);
    ops::Rope(x, 10000.0);
    ops::Rope(xd, 10000.0);
    ASSERT_TRUE(AllClose(ToHost(xd), x, Tol(t), "Rope")) << ShapeString(s);
    Tensor g = Input(s, t, rng);
    Tensor gd = ToDevice(g, t);
    ops::RopeBackward(g, 500000.0);
    ops::RopeBackward(gd, 500000.0);
    ASSERT_TRUE(AllClose(ToHost(gd), g, Tol(t), "RopeBackward")) << ShapeString(s);
  }
}

// Llama 3.1's scaling with original_max_position 256, so that T = 989 and
// D = 64/128 span all three llama3 bands, and linear scaling.
TEST_P(CudaOps, RopeWithScalingForwardAndInverse) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(14);
  RopeParams llama3{500000.0, {}};
  llama3.scaling = {RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 256};
  RopeParams linear{10000.0, {}};
  linear.scaling = {RopeScaling::Type::kLinear, 4.0, 1.0, 4.0, 8192};
  for (const RopeParams& p : {llama3, linear}) {
    for (Shape s : {Shape{1, 1, 1, 2}, Shape{2, 19, 3, 64}, Shape{1, 989, 2, 128}}) {
      Tensor x = Input(s, t, rng);
      Tensor xd = ToDevice(x, t);
      ops::Rope(x, p);
      ops::Rope(xd, p);
      ASSERT_TRUE(AllClose(ToHost(xd), x, Tol(t), "Rope")) << ShapeString(s) << RopeScalingName(p.scaling.type);
      Tensor g = Input(s, t, rng);
      Tensor gd = ToDevice(g, t);
      ops::RopeBackward(g, p);
      ops::RopeBackward(gd, p);
      ASSERT_TRUE(AllClose(ToHost(gd), g, Tol(t), "RopeBackward"))
          << ShapeString(s) << RopeScalingName(p.scaling.type);
    }
  }
}

TEST_P(CudaOps, SwiGluForwardBackward) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(5);
  for (int64_t n : {1, 19, 111 * 989}) {
    Tensor g = Input({n}, t, rng, 0.1, 4.0), u = Input({n}, t, rng), dh = Input({n}, t, rng);
    Tensor h = Tensor::Empty({n}, DType::kF32), dg = h.Clone(), du = h.Clone();
    ops::SwiGlu(g, u, h);
    ops::SwiGluBackward(dh, g, u, dg, du);
    Tensor gd = ToDevice(g, t), ud = ToDevice(u, t);
    Tensor hd = Tensor::Empty({n}, t, DefaultCudaAllocator()), dgd = hd.Clone(), dud = hd.Clone();
    ops::SwiGlu(gd, ud, hd);
    ops::SwiGluBackward(ToDevice(dh, t), gd, ud, dgd, dud);
    ASSERT_TRUE(AllClose(ToHost(hd), h, Tol(t), "SwiGlu h")) << n;
    ASSERT_TRUE(AllClose(ToHost(dgd), dg, Tol(t), "dgate")) << n;
    ASSERT_TRUE(AllClose(ToHost(dud), du, Tol(t), "dup")) << n;
  }
}

TEST_P(CudaOps, EmbeddingForwardBackward) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(6);
  for (int64_t vocab_start : {0, 100}) for (int64_t n : {1, 19, 989}) for (int64_t c : {1, 111}) {
    const int64_t v_local = 300;
    Tensor tokens = Tensor::Empty({n}, DType::kI32);
    std::uniform_int_distribution<int32_t> tok(0, 499);  // some outside [start, start + 300)
    for (int64_t i = 0; i < n; ++i) tokens.data<int32_t>()[i] = tok(rng);
    Tensor table = Input({v_local, c}, t, rng);
    Tensor out = Tensor::Empty({n, c}, DType::kF32);
    ops::Embedding(tokens, table, vocab_start, out);
    Tensor td = ToDeviceI32(tokens);
    Tensor outd = Tensor::Empty({n, c}, t, DefaultCudaAllocator());
    ops::Embedding(td, ToDevice(table, t), vocab_start, outd);
    ASSERT_TRUE(AllClose(ToHost(outd), out, {0, 0}, "Embedding"));  // a copy: exact
    Tensor dout = Input({n, c}, t, rng), dtable = Input({v_local, c}, DType::kF32, rng);
    Tensor dtd = ToDevice(dtable, DType::kF32);
    ops::EmbeddingBackward(dout, tokens, vocab_start, dtable);
    ops::EmbeddingBackward(ToDevice(dout, t), td, vocab_start, dtd);
    // Same per-column token order as the CPU, fp32 accumulation: bit-exact.
    ASSERT_TRUE(AllClose(ToHost(dtd), dtable, {0, 0}, "EmbeddingBackward"));
  }
}

TEST_P(CudaOps, SoftmaxCrossEntropyFused) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(7);
  for (int64_t n : {1, 19, 111}) for (int64_t v : {1, 19, 989, 32000}) {
    Tensor logits = Input({n, v}, t, rng, 0.1, 8.0);
    Tensor targets = Tensor::Empty({n}, DType::kI32);
    std::uniform_int_distribution<int32_t> tgt(0, static_cast<int32_t>(v - 1));
    for (int64_t i = 0; i < n; ++i) targets.data<int32_t>()[i] = i % 7 == 3 ? -1 : tgt(rng);
    Tensor losses = Tensor::Empty({n}, DType::kF32), dl = Tensor::Empty({n, v}, DType::kF32);
    ops::SoftmaxCrossEntropy(logits, targets, losses, &dl, 0.25f);
    Tensor ld = ToDevice(logits, t);
    Tensor lossd = Tensor::Empty({n}, DType::kF32, DefaultCudaAllocator());
    ops::SoftmaxCrossEntropy(ld, ToDeviceI32(targets), lossd, &ld, 0.25f);  // in place
    ASSERT_TRUE(AllClose(ToHost(lossd), losses, {1e-5, 1e-5}, "CE loss")) << n << "x" << v;
    const Tolerance tol = t == DType::kF32 ? Tolerance{1e-7, 1e-5} : Tolerance{1e-6, 1e-2};
    ASSERT_TRUE(AllClose(ToHost(ld), dl, tol, "CE dlogits")) << n << "x" << v;
  }
}

struct AttnDims { int64_t b, t, h, kv, d; };

// The op table's attention, forward and backward, against the CPU kernel on
// one shape, and a second backward bitwise equal to the first.
void CheckAttentionAgainstCpu(DType t, const AttnDims& s, std::mt19937_64& rng) {
  Tensor q = Input({s.b, s.t, s.h, s.d}, t, rng), k = Input({s.b, s.t, s.kv, s.d}, t, rng),
         v = Input({s.b, s.t, s.kv, s.d}, t, rng), dout = Input(q.shape(), t, rng);
  Tensor out = Tensor::Empty(q.shape(), DType::kF32), lse = Tensor::Empty({s.b, s.h, s.t}, DType::kF32);
  ops::Attention(q, k, v, out, lse, nullptr);
  Tensor qd = ToDevice(q, t), kd = ToDevice(k, t), vd = ToDevice(v, t);
  Tensor outd = Tensor::Empty(q.shape(), t, DefaultCudaAllocator());
  Tensor lsed = Tensor::Empty({s.b, s.h, s.t}, DType::kF32, DefaultCudaAllocator());
  ops::Attention(qd, kd, vd, outd, lsed, nullptr);
  const std::string where = absl::StrCat(s.b, ",", s.t, ",", s.h, ",", s.kv, ",", s.d);
  ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "attention out")) << where;
  ASSERT_TRUE(AllClose(ToHost(lsed), lse, {1e-5, 1e-5}, "lse")) << where;
  // Backward from the same (out, lse) on both sides: out rounded like the GPU's.
  Tensor out_in = t == DType::kBF16 ? RoundBf16(out) : out;
  Tensor dq = Tensor::Empty(q.shape(), DType::kF32), dk = Tensor::Empty(k.shape(), DType::kF32),
         dv = Tensor::Empty(v.shape(), DType::kF32);
  ops::AttentionBackward(dout, q, k, v, out_in, lse, nullptr, dq, dk, dv);
  Tensor dqd = Tensor::Empty(q.shape(), t, DefaultCudaAllocator());
  Tensor dkd = Tensor::Empty(k.shape(), t, DefaultCudaAllocator()), dvd = dkd.Clone();
  ops::AttentionBackward(ToDevice(dout, t), qd, kd, vd, ToDevice(out_in, t), ToDevice(lse, DType::kF32),
                         nullptr, dqd, dkd, dvd);
  const Tolerance tol = t == DType::kF32 ? Tolerance{2e-6 * s.t + 1e-5, 1e-4} : Tolerance{2e-2, 2e-2};
  ASSERT_TRUE(AllClose(ToHost(dqd), dq, tol, "dq")) << where;
  ASSERT_TRUE(AllClose(ToHost(dkd), dk, tol, "dk")) << where;
  ASSERT_TRUE(AllClose(ToHost(dvd), dv, tol, "dv")) << where;
  // Deterministic: a second backward gives the same bits.
  Tensor dq2 = dqd.Clone(), dk2 = dkd.Clone(), dv2 = dvd.Clone();
  ops::AttentionBackward(ToDevice(dout, t), qd, kd, vd, ToDevice(out_in, t), ToDevice(lse, DType::kF32),
                         nullptr, dq2, dk2, dv2);
  EXPECT_TRUE(AllClose(ToHost(dq2), ToHost(dqd), {1e-30, 0}, "dq rerun")) << where;
  EXPECT_TRUE(AllClose(ToHost(dk2), ToHost(dkd), {1e-30, 0}, "dk rerun")) << where;
  EXPECT_TRUE(AllClose(ToHost(dv2), ToHost(dvd), {1e-30, 0}, "dv rerun")) << where;
}

// Sets the attention backend for one scope (the setting is process-wide).
class ScopedAttentionBackend {
 public:
  explicit ScopedAttentionBackend(cuda::AttentionBackend b) : old_(cuda::GetAttentionBackend()) {
    cuda::SetAttentionBackend(b);
  }
  ~ScopedAttentionBackend() { cuda::SetAttentionBackend(old_); }

 private:
  cuda::AttentionBackend old_;
};

TEST_P(CudaOps, AttentionForwardBackward) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(8);
  // Our kernels only: cuDNN has its own test below.
  ScopedAttentionBackend flash(cuda::AttentionBackend::kFlash);
  // bf16 with d 64/128 runs FlashAttention-2 (64-row tiles): odd t cover
  // partial tiles, t = 1 a lone row, 989 many tiles; h/kv 1, 2, 3 and 4.
  for (AttnDims s : {AttnDims{1, 1, 1, 1, 8}, AttnDims{2, 19, 4, 2, 64}, AttnDims{1, 111, 6, 2, 128},
                     AttnDims{1, 300, 4, 1, 64}, AttnDims{1, 1, 2, 1, 64}, AttnDims{2, 1, 2, 2, 128},
                     AttnDims{1, 19, 3, 1, 128}, AttnDims{2, 111, 4, 4, 64}, AttnDims{1, 989, 4, 2, 64},
                     AttnDims{1, 989, 2, 1, 128}}) {
    const bool flash = cuda::AttentionUsesFlash(t == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32,
                                                {s.b, s.t, s.h, s.kv, s.d});
    EXPECT_EQ(flash, t == DType::kBF16 && (s.d == 64 || s.d == 128));
    CheckAttentionAgainstCpu(t, s, rng);
    if (HasFatalFailure()) return;
  }
}

// The op table with cuDNN forced (errors are returned, never a silent
// fallback to FA2): the same shapes and tolerances as FA2, odd t included.
TEST(CudaOpsCudnn, AttentionMatchesCpuThroughTheOpTable) {
  REQUIRE_GPU();
  if (!cuda::CudnnAttentionBuilt()) GTEST_SKIP() << "built without cuDNN";
  ScopedAttentionBackend cudnn(cuda::AttentionBackend::kCudnn);
  std::mt19937_64 rng(18);
  // Fewer shapes than FA2's: every new shape is a plan build (NVRTC) of its own.
  for (AttnDims s : {AttnDims{2, 19, 4, 2, 64}, AttnDims{1, 111, 6, 2, 128}, AttnDims{1, 1, 2, 1, 64},
                     AttnDims{2, 111, 4, 4, 64}, AttnDims{1, 989, 2, 1, 128},
                     AttnDims{2, 333, 8, 2, 64}}) {
    const cuda::AttentionDims dims{s.b, s.t, s.h, s.kv, s.d};
    ASSERT_TRUE(cuda::AttentionUsesCudnn(cuda::Float::kBF16, dims, false));
    for (bool bwd : {false, true}) {
      const absl::StatusOr<std::string> plan = cuda::CudnnAttentionPlanInfo(dims, bwd);
      ASSERT_TRUE(plan.ok()) << plan.status();
      std::printf("cudnn %s %ld,%ld,%ld,%ld,%ld: %s\n", bwd ? "bwd" : "fwd", long(s.b), long(s.t),
                  long(s.h), long(s.kv), long(s.d), plan->c_str());
    }
    CheckAttentionAgainstCpu(DType::kBF16, s, rng);
    if (HasFatalFailure()) return;
  }
}

// No GPU needed: the kAuto rule (bf16 -> cuDNN where built, both head dims
// measured; the backward only while its b·h·t² workspace is <= 4 GiB; f32
// and a forced kFlash -> ours).
TEST(CudaOpsCudnn, AutoRuleTakesCudnnForBf16WithinTheWorkspaceCap) {
  ScopedAttentionBackend automatic(cuda::AttentionBackend::kAuto);
  const bool built = cuda::CudnnAttentionBuilt();
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {4, 2048, 16, 4, 128}, true), built);
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {4, 2048, 16, 4, 128}, false), built);
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {16, 1024, 12, 12, 64}, true), built);
  // 2·1·32·16384² bytes = 16 GiB of dS workspace: the backward stays on FA2.
  EXPECT_FALSE(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {1, 16384, 32, 8, 128}, true));
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {1, 16384, 32, 8, 128}, false), built);
  EXPECT_FALSE(cuda::AttentionUsesCudnn(cuda::Float::kF32, {4, 2048, 16, 4, 128}, true));
  ScopedAttentionBackend flash(cuda::AttentionBackend::kFlash);
  EXPECT_FALSE(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {4, 2048, 16, 4, 128}, true));
}

TEST_P(CudaOps, ElementwiseAndReductions) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(9);
  for (int64_t n : {1, 19, 989, 1 << 20}) {
    Tensor a = Input({n}, t, rng), b = Input({n}, t, rng);
    Tensor ad = ToDevice(a, t), bd = ToDevice(b, t);
    Tensor out = Tensor::Empty({n}, DType::kF32);
    Tensor outd = Tensor::Empty({n}, t, DefaultCudaAllocator());
    ops::Add(a, b, out);
    ops::Add(ad, bd, outd);
    ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "Add")) << n;
    ops::AddInPlace(a, b);
    ops::AddInPlace(ad, bd);
    ops::Scale(a, -0.75f);
    ops::Scale(ad, -0.75f);
    ASSERT_TRUE(AllClose(ToHost(ad), a, Tol(t), "AddInPlace+Scale")) << n;
    // Reductions of the same values: compare against the CPU on the GPU's data.
    Tensor back = ToHost(bd);
    EXPECT_NEAR(ops::SumSquares(bd), ops::SumSquares(back), 1e-9 * n + 1e-6 * ops::SumSquares(back));
    EXPECT_NEAR(ops::Sum(bd), ops::Sum(back), 1e-9 * n + 1e-6 * std::fabs(ops::Sum(back)));
  }
}

// Views that start one element in are not 16-byte aligned: the kernels
// must take their element-by-element path there and agree with the CPU.
TEST_P(CudaOps, UnalignedViewsTakeTheElementPath) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(19);
  const int64_t n = 1001;
  Tensor a = Input({n + 1}, t, rng), b = Input({n + 1}, t, rng, 0.1, 4.0);
  Tensor ad = ToDevice(a, t), bd = ToDevice(b, t);
  Tensor av = a.Slice(1, n), bv = b.Slice(1, n), adv = ad.Slice(1, n), bdv = bd.Slice(1, n);
  Tensor out = Tensor::Empty({n}, DType::kF32);
  Tensor outd_full = Tensor::Empty({n + 1}, t, DefaultCudaAllocator());
  Tensor outd = outd_full.Slice(1, n);
  ops::Add(av, bv, out);
  ops::Add(adv, bdv, outd);
  ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "Add unaligned"));
  ops::SwiGlu(bv, av, out);
  ops::SwiGlu(bdv, adv, outd);
  ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "SwiGlu unaligned"));
  ops::Scale(av, 0.5f);
  ops::Scale(adv, 0.5f);
  ASSERT_TRUE(AllClose(ToHost(adv), av, Tol(t), "Scale unaligned"));
  const Tensor back = ToHost(bdv);
  EXPECT_NEAR(ops::SumSquares(bdv), ops::SumSquares(back), 1e-9 * n + 1e-6 * ops::SumSquares(back));
}

TEST(CudaOpsF32, AdamWMatchesCpu) {
  REQUIRE_GPU();
  std::mt19937_64 rng(10);
  for (int64_t n : {1, 19, 8193, 100003}) {
    Tensor p = Input({n}, DType::kF32, rng), g = Input({n}, DType::kF32, rng);
    Tensor m = Input({n}, DType::kF32, rng, 0.0, 0.1), v = Input({n}, DType::kF32, rng, 0.0, 0.1);
    for (int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
    Tensor pd = ToDevice(p, DType::kF32), gd = ToDevice(g, DType::kF32),
           md = ToDevice(m, DType::kF32), vd = ToDevice(v, DType::kF32);
    for (int64_t step = 1; step <= 3; ++step) {
      const ops::AdamWParams hp{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step};
      ops::AdamW(p, g, m, v, hp);
      ops::AdamW(pd, gd, md, vd, hp);
    }
    ASSERT_TRUE(AllClose(ToHost(pd), p, {1e-6, 1e-5}, "AdamW p")) << n;
    ASSERT_TRUE(AllClose(ToHost(md), m, {1e-6, 1e-5}, "AdamW m")) << n;
    ASSERT_TRUE(AllClose(ToHost(vd), v, {1e-7, 1e-5}, "AdamW v")) << n;
  }
}

// The multi-tensor kernel with the optional bf16 copy, on an aligned tensor
// (float4 path, odd tail) and a view one element in (element path): the
// fp32 results are the CPU's within AdamWMatchesCpu's budget, and the copy
// is exactly Convert of the updated weights.
TEST(CudaOpsF32, AdamWWritesTheBf16CopyOfTheUpdatedWeights) {
  REQUIRE_GPU();
  std::mt19937_64 rng(11);
  const int64_t n = 20003;
  Tensor p = Input({n + 1}, DType::kF32, rng), g = Input({n + 1}, DType::kF32, rng);
  Tensor m = Input({n + 1}, DType::kF32, rng, 0.0, 0.1), v = Input({n + 1}, DType::kF32, rng, 0.0, 0.1);
  for (int64_t i = 0; i <= n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);  // a second moment
  Tensor pd = ToDevice(p, DType::kF32), gd = ToDevice(g, DType::kF32), md = ToDevice(m, DType::kF32),
         vd = ToDevice(v, DType::kF32);
  Tensor copy = Tensor::Empty({n + 1}, DType::kBF16, DefaultCudaAllocator());
  Tensor copy_view = Tensor::Empty({n + 1}, DType::kBF16, DefaultCudaAllocator());
  const ops::AdamWParams hp{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 2};
  const cuda::AdamWHyper h{hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.step, 0.5f};
  // Tensor 0: elements [0, n) (aligned); tensor 1 would overlap, so the view
  // test runs as a second launch on elements [1, n + 1) of fresh copies.
  cuda::AdamWTensor whole{static_cast<float*>(pd.raw()), static_cast<const float*>(gd.raw()),
                          static_cast<float*>(md.raw()), static_cast<float*>(vd.raw()), n, copy.raw()};
  ASSERT_TRUE(cuda::AdamWMultiTensor(&whole, 1, h, cuda::CurrentStream()).ok());
  Tensor pd2 = ToDevice(p, DType::kF32), md2 = ToDevice(m, DType::kF32), vd2 = ToDevice(v, DType::kF32);
  cuda::AdamWTensor shifted{static_cast<float*>(pd2.raw()) + 1, static_cast<const float*>(gd.raw()) + 1,
                            static_cast<float*>(md2.raw()) + 1, static_cast<float*>(vd2.raw()) + 1, n,
                            static_cast<uint16_t*>(copy_view.raw()) + 1};
  ASSERT_TRUE(cuda::AdamWMultiTensor(&shifted, 1, h, cuda::CurrentStream()).ok());
  // CPU reference: the same update with the gradient pre-scaled by 0.5.
  for (int64_t i = 0; i <= n; ++i) g.data<float>()[i] *= 0.5f;
  ops::AdamW(p, g, m, v, hp);
  const Tensor ph = ToHost(pd), ph2 = ToHost(pd2);
  const Tensor ch = ToHost(copy), ch2 = ToHost(copy_view);
  for (int64_t i = 0; i <= n; ++i) {
    const float want = p.data<float>()[i];
    if (i < n) {
      ASSERT_NEAR(ph.data<float>()[i], want, 1e-6 + 1e-5 * std::fabs(want)) << "aligned " << i;
      ASSERT_EQ(ch.data<float>()[i], cpu::Bf16ToF32(cpu::F32ToBf16(ph.data<float>()[i]))) << i;
    }
    if (i > 0) {
      ASSERT_NEAR(ph2.data<float>()[i], want, 1e-6 + 1e-5 * std::fabs(want)) << "shifted " << i;
      ASSERT_EQ(ch2.data<float>()[i], cpu::Bf16ToF32(cpu::F32ToBf16(ph2.data<float>()[i]))) << i;
    }
  }
}

// The checker must be able to fail: a GPU result nudged past the budget.
TEST(CudaOpsF32, ParityCheckerCatchesAPerturbation) {
  REQUIRE_GPU();
  std::mt19937_64 rng(11);
  Tensor x = Input({19, 111}, DType::kF32, rng), w = Input({111}, DType::kF32, rng);
  Tensor y = Tensor::Empty({19, 111}, DType::kF32), r = Tensor::Empty({19}, DType::kF32);
  ops::RmsNorm(x, w, 1e-5f, y, r);
  Tensor yd = Tensor::Empty({19, 111}, DType::kF32, DefaultCudaAllocator());
  Tensor rd = Tensor::Empty({19}, DType::kF32, DefaultCudaAllocator());
  ops::RmsNorm(ToDevice(x, DType::kF32), ToDevice(w, DType::kF32), 1e-5f, yd, rd);
  Tensor got = ToHost(yd);
  ASSERT_TRUE(AllClose(got, y, kF32));
  const float ref = y.data<float>()[7 * 111 + 5];
  got.data<float>()[7 * 111 + 5] = ref + 3.0f * static_cast<float>(kF32.atol + kF32.rtol * std::fabs(ref));
  EXPECT_FALSE(AllClose(got, y, kF32));
}

TEST(CudaOpsF32, MixedDevicesAbortWithTheArgumentName) {
  REQUIRE_GPU();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::mt19937_64 rng(12);
  Tensor x = ToDevice(Input({4, 8}, DType::kF32, rng), DType::kF32);
  Tensor w = Input({8}, DType::kF32, rng);  // on the CPU: a caller bug
  Tensor y = x.Clone(), r = Tensor::Empty({4}, DType::kF32, DefaultCudaAllocator());
  EXPECT_DEATH(ops::RmsNorm(x, w, 1e-5f, y, r), "RmsNorm: w is f32\\[8\\] cpu");
  Tensor lse = Tensor::Empty({1, 1, 4}, DType::kF32, DefaultCudaAllocator());
  Tensor q = ToDevice(Input({1, 4, 1, 8}, DType::kF32, rng), DType::kF32), out = q.Clone();
  Tensor probs = Tensor::Empty({1, 1, 4, 4}, DType::kF32, DefaultCudaAllocator());
  EXPECT_DEATH(ops::Attention(q, q, q, out, lse, &probs), "probs cannot be stored on CUDA");
}

// No GPU needed: the status conversion itself.
TEST(CudaCheck, StatusCarriesExpressionFileLineAndCanonicalCode) {
  const absl::Status oom = FromCuda(cudaErrorMemoryAllocation, "cudaMalloc(&p, n)", "a.cc", 12);
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(oom.message().find("a.cc:12: cudaMalloc(&p, n): cudaErrorMemoryAllocation"),
            absl::string_view::npos)
      << oom;
  EXPECT_EQ(FromCuda(cudaErrorInvalidValue, "x", "b.cc", 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FromCuda(cudaSuccess, "x", "b.cc", 1).ok());
  const absl::Status blas = FromCublas(CUBLAS_STATUS_ALLOC_FAILED, "cublasLtCreate(&h)", "c.cc", 3);
  EXPECT_EQ(blas.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(blas.message().find("c.cc:3: cublasLtCreate(&h)"), absl::string_view::npos) << blas;
  EXPECT_EQ(FromCublas(CUBLAS_STATUS_INVALID_VALUE, "x", "d.cc", 4).code(),
            absl::StatusCode::kInvalidArgument);
}

#ifdef BATON_HAVE_CUDNN
// No GPU needed: "no engine for this graph/shape" must read as Unimplemented
// (attention.cu falls back to FA2 on exactly that code), bad parameters as
// InvalidArgument, and the message must carry the call and file:line.
TEST(CudaCheck, CudnnStatusCarriesNameExpressionAndCanonicalCode) {
  const absl::Status shape =
      FromCudnn(CUDNN_STATUS_NOT_SUPPORTED_SHAPE, "cudnnBackendFinalize(plan)", "e.cc", 7);
  EXPECT_EQ(shape.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(shape.message().find("e.cc:7: cudnnBackendFinalize(plan): CUDNN_STATUS_NOT_SUPPORTED_SHAPE"),
            absl::string_view::npos)
      << shape;
  EXPECT_EQ(FromCudnn(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "x", "f.cc", 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromCudnn(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED, "x", "f.cc", 1).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromCudnn(CUDNN_STATUS_EXECUTION_FAILED, "x", "f.cc", 1).code(),
            absl::StatusCode::kInternal);
  EXPECT_TRUE(FromCudnn(CUDNN_STATUS_SUCCESS, "x", "f.cc", 1).ok());
}

// No GPU needed: every tensor and operation descriptor of both graphs
// (MHA and GQA) takes its attributes and finalizes; only the op graph and
// plan need a handle.
TEST(CudaCheck, CudnnAttentionGraphOpsFinalizeWithoutAGpu) {
  for (const cuda::AttentionDims& d : {cuda::AttentionDims{2, 333, 8, 2, 64},
                                       cuda::AttentionDims{4, 2048, 16, 16, 128}})
    for (bool bwd : {false, true}) {
      const absl::Status s = cuda::CudnnAttentionBuildOps(d, bwd);
      EXPECT_TRUE(s.ok()) << (bwd ? "bwd: " : "fwd: ") << s;
    }
}

// No GPU needed: heuristics and engine finalize for a described H100 (SXM,
// 132 SMs; cuDNN's DEVICEPROP JSON, field names from its parser's errors),
// so a CI machine sees whether cuDNN's fused engines accept both graphs.
constexpr const char* kH100Json =
    R"({"maxGridSize": [2147483647, 65535, 65535], "maxBlockSize": [1024, 1024, 64],)"
    R"( "regsPerBlock": 65536, "multiProcessorCount": 132, "warpSize": 32,)"
    R"( "maxSharedMemoryPerBlock": 49152, "maxSharedMemoryPerBlockOptin": 232448,)"
    R"( "reservedSharedMemoryPerBlock": 1024, "maxRegistersPerSM": 65536, "maxCtasPerSM": 32,)"
    R"( "maxThreadsPerBlock": 1024, "maxThreadsPerSM": 2048, "pciDeviceId": 0, "isTccDriver": 0,)"
    R"( "supportCoopLaunch": 1, "smClockRateKHz": 1980000, "memClockRateKHz": 2619000,)"
    R"( "l2CacheSize": 52428800, "deviceName": "NVIDIA H100 80GB HBM3", "deviceVer": 900,)"
    R"( "driverVer": 13000, "totalGlobalMem": 85045149696, "cudaDeviceId": 0})";

TEST(CudaCheck, CudnnAttentionPlansFinalizeForAnH100WithoutAGpu) {
  // cuDNN's engine support checks load the driver even for a described
  // device (log: "RUNTIME_PREREQUISITE_MISSING; Reason: this->libcuda ==
  // nullptr"); without it every config is refused before the graph is
  // looked at. (Without a driver cuDNN still logs finalizeMode SDPA_FWD /
  // SDPA_BWD for these graphs under CUDNN_LOGLEVEL_DBG=3: the patterns match.)
  void* libcuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (libcuda == nullptr) GTEST_SKIP() << "no CUDA driver (libcuda.so.1)";
  dlclose(libcuda);
  for (const cuda::AttentionDims& d :
       {cuda::AttentionDims{2, 333, 8, 2, 64}, cuda::AttentionDims{4, 2048, 16, 4, 128}})
    for (bool bwd : {false, true}) {
      const absl::StatusOr<std::string> info = cuda::CudnnAttentionPlanInfoForDevice(d, bwd, kH100Json);
      EXPECT_TRUE(info.ok()) << (bwd ? "bwd " : "fwd ") << d.b << "," << d.t << "," << d.h << ","
                             << d.kv << "," << d.d << ": " << info.status();
      if (info.ok())
        std::printf("H100 (described) %s %ld,%ld,%ld,%ld,%ld: %s\n", bwd ? "bwd" : "fwd", long(d.b),
                    long(d.t), long(d.h), long(d.kv), long(d.d), info->c_str());
    }
}
#endif

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(CudaOps, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
