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
// skip cleanly without a GPU and compile to one skip without CUDA.
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
#include "kernels/cpu/convert.h"
#include "runtime/cuda_allocator.h"
#include "tests/kernels/gpu_test_util.h"

namespace baton {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using ops::OpId;
using testing::AllClose;
using testing::Input;
using testing::RoundBf16;
using testing::ToDevice;
using testing::ToDeviceI32;
using testing::ToHost;
using testing::Tolerance;

constexpr DType kF32 = DType::kF32;

// The dtype's tolerance for an output summed over k terms.
Tolerance Tol(DType t, int64_t k = 0) {
  const Tolerance base = t == kF32 ? Tolerance{1e-5, 1e-5} : Tolerance{1e-2, 1e-2};
  return {base.atol + 2e-6 * static_cast<double>(k), base.rtol};
}
// Statistics and losses are f32 on both sides, from the same values.
constexpr Tolerance kStat{1e-5, 1e-4};

#define PARITY_OK(expr)                                                          \
  do {                                                                           \
    const absl::Status parity_st_ = (expr);                                      \
    if (!parity_st_.ok()) return AssertionFailure() << #expr << ": " << parity_st_; \
  } while (0)
#define PARITY_CHECK(cond)                    \
  do {                                        \
    AssertionResult parity_r_ = (cond);       \
    if (!parity_r_) return parity_r_;         \
  } while (0)

template <typename... D>
std::string At(const char* what, DType t, D... dims) {
  std::string s = absl::StrCat(what, " ", DTypeName(t), " at");
  ((s += absl::StrCat(" ", dims)), ...);
  return s;
}

Tensor Dev(const Shape& s, DType t) { return Tensor::Empty(s, t, DefaultCudaAllocator()); }
Tensor Host(const Shape& s) { return Tensor::Empty(s, kF32); }
// A size drawn per run in [lo, hi]: the shapes nobody chose.
int64_t Drawn(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}
// Ids in [0, hi], every fifth -1 (ignored by the losses).
Tensor Ids(int64_t n, int64_t hi, std::mt19937_64& rng, bool ignore_some) {
  Tensor t = Tensor::Empty({n}, DType::kI32);
  std::uniform_int_distribution<int64_t> id(0, hi);
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = ignore_some && i % 5 == 4 ? -1 : static_cast<int32_t>(id(rng));
  return t;
}

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

// ---- SwiGLU, embedding, cross-entropy

AssertionResult SwiGluCase(DType t, std::mt19937_64& rng, bool backward) {
  for (int64_t n : {int64_t{1}, int64_t{19}, int64_t{111 * 989 + 2}, Drawn(rng, 2, 5000)}) {
    Tensor g = Input({n}, t, rng, 0.1, 4.0), u = Input({n}, t, rng), dh = Input({n}, t, rng);
    const Tensor gd = ToDevice(g, t), ud = ToDevice(u, t);
    if (!backward) {
      Tensor h = Host({n}), hd = Dev({n}, t);
      PARITY_OK(ops::SwiGlu(g, u, h));
      PARITY_OK(ops::SwiGlu(gd, ud, hd));
      PARITY_CHECK(AllClose(ToHost(hd), h, Tol(t), At("SwiGlu h", t, n)));
      continue;
    }
    Tensor dg = Host({n}), du = Host({n}), dgd = Dev({n}, t), dud = Dev({n}, t);
    PARITY_OK(ops::SwiGluBackward(dh, g, u, dg, du));
    PARITY_OK(ops::SwiGluBackward(ToDevice(dh, t), gd, ud, dgd, dud));
    PARITY_CHECK(AllClose(ToHost(dgd), dg, Tol(t), At("SwiGluBackward dgate", t, n)));
    PARITY_CHECK(AllClose(ToHost(dud), du, Tol(t), At("SwiGluBackward dup", t, n)));
  }
  return AssertionSuccess();
}
AssertionResult SwiGluForwardCase(DType t, std::mt19937_64& rng) { return SwiGluCase(t, rng, false); }
AssertionResult SwiGluBackwardCase(DType t, std::mt19937_64& rng) { return SwiGluCase(t, rng, true); }

// A vocabulary shard of 300 ids at vocab_start; tokens over [0, 500), so
// some fall outside the shard (zero rows forward, no gradient back).
AssertionResult EmbeddingCase(DType t, std::mt19937_64& rng, bool backward) {
  constexpr int64_t kShard = 300;
  for (int64_t start : {0, 100})
    for (int64_t n : {int64_t{1}, int64_t{19}, int64_t{989}, Drawn(rng, 2, 400)})
      for (int64_t c : {int64_t{1}, int64_t{111}, Drawn(rng, 2, 200)}) {
        const Tensor tokens = Ids(n, 499, rng, false), td = ToDeviceI32(tokens);
        if (!backward) {
          Tensor table = Input({kShard, c}, t, rng), out = Host({n, c}), outd = Dev({n, c}, t);
          PARITY_OK(ops::Embedding(tokens, table, start, out));
          PARITY_OK(ops::Embedding(td, ToDevice(table, t), start, outd));
          PARITY_CHECK(AllClose(ToHost(outd), out, {0, 0}, At("Embedding (a copy: exact)", t, start, n, c)));
          continue;
        }
        Tensor dout = Input({n, c}, t, rng), dtable = Input({kShard, c}, kF32, rng);
        Tensor dtd = ToDevice(dtable, kF32);
        PARITY_OK(ops::EmbeddingBackward(dout, tokens, start, dtable));
        PARITY_OK(ops::EmbeddingBackward(ToDevice(dout, t), td, start, dtd));
        // Same per-column token order as the CPU, fp32 accumulation: bit-exact.
        PARITY_CHECK(AllClose(ToHost(dtd), dtable, {0, 0}, At("EmbeddingBackward", t, start, n, c)));
      }
  return AssertionSuccess();
}
AssertionResult EmbeddingForwardCase(DType t, std::mt19937_64& rng) { return EmbeddingCase(t, rng, false); }
AssertionResult EmbeddingBackwardCase(DType t, std::mt19937_64& rng) { return EmbeddingCase(t, rng, true); }

AssertionResult SoftmaxCrossEntropyCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 200)})
    for (int64_t v : {int64_t{1}, int64_t{19}, int64_t{989}, int64_t{32000}, Drawn(rng, 2, 5000)}) {
      Tensor logits = Input({n, v}, t, rng, 0.1, 8.0);
      const Tensor targets = Ids(n, v - 1, rng, true);
      Tensor losses = Host({n}), dl = Host({n, v});
      PARITY_OK(ops::SoftmaxCrossEntropy(logits, targets, losses, &dl, 0.25f));
      Tensor ld = ToDevice(logits, t), lossd = Dev({n}, kF32);
      PARITY_OK(ops::SoftmaxCrossEntropy(ld, ToDeviceI32(targets), lossd, &ld, 0.25f));  // in place, as the model
      PARITY_CHECK(AllClose(ToHost(lossd), losses, kStat, At("SoftmaxCrossEntropy loss", t, n, v)));
      const Tolerance tol = t == kF32 ? Tolerance{1e-7, 1e-5} : Tolerance{1e-6, 1e-2};
      PARITY_CHECK(AllClose(ToHost(ld), dl, tol, At("SoftmaxCrossEntropy dlogits", t, n, v)));
    }
  return AssertionSuccess();
}

// ---- Vocab-parallel cross-entropy: shard 1 of 3 (vocab_start = v), targets
// over the whole vocabulary 3·v; each piece from the CPU's inputs.

struct VocabShard {
  int64_t n, v;
  Tensor logits, targets, max, sum, target;  // CPU; the statistics are the CPU's
};
absl::StatusOr<VocabShard> MakeShard(int64_t n, int64_t v, DType t, std::mt19937_64& rng) {
  VocabShard s{n, v, Input({n, v}, t, rng, 0.05, 6.0), Ids(n, 3 * v - 1, rng, true), Host({n}), Host({n}), Host({n})};
  s.targets.data<int32_t>()[0] = static_cast<int32_t>(v + (v - 1) / 2);  // one hit in the shard always
  BATON_RETURN_IF_ERROR(ops::RowMax(s.logits, s.max));
  BATON_RETURN_IF_ERROR(ops::RowSumExp(s.logits, s.max, s.sum));
  BATON_RETURN_IF_ERROR(ops::PickTargets(s.logits, s.targets, v, s.target));
  return s;
}

enum class VocabPiece { kRowMax, kRowSumExp, kPickTargets, kLoss };

AssertionResult VocabParallelCase(DType t, std::mt19937_64& rng, VocabPiece piece) {
  for (int64_t n : {int64_t{1}, int64_t{19}, Drawn(rng, 2, 200)})
    for (int64_t v : {int64_t{1}, int64_t{989}, int64_t{16000}, Drawn(rng, 2, 5000)}) {
      absl::StatusOr<VocabShard> made = MakeShard(n, v, t, rng);
      PARITY_OK(made.status());
      const VocabShard& s = *made;
      const Tensor x = ToDevice(s.logits, t), tg = ToDeviceI32(s.targets);
      const Tensor maxd = ToDevice(s.max, kF32), sumd = ToDevice(s.sum, kF32), targetd = ToDevice(s.target, kF32);
      Tensor outd = Dev({n}, kF32);
      switch (piece) {
        case VocabPiece::kRowMax:
          PARITY_OK(ops::RowMax(x, outd));
          PARITY_CHECK(AllClose(ToHost(outd), s.max, {0, 0}, At("RowMax", t, n, v)));
          break;
        case VocabPiece::kRowSumExp:
          PARITY_OK(ops::RowSumExp(x, maxd, outd));
          PARITY_CHECK(AllClose(ToHost(outd), s.sum, {0, 2e-5}, At("RowSumExp", t, n, v)));
          break;
        case VocabPiece::kPickTargets:
          PARITY_OK(ops::PickTargets(x, tg, v, outd));
          PARITY_CHECK(AllClose(ToHost(outd), s.target, {0, 0}, At("PickTargets", t, n, v)));
          break;
        case VocabPiece::kLoss: {
          Tensor losses = Host({n}), dl = Host({n, v}), dld = Dev({n, v}, t);
          PARITY_OK(ops::VocabParallelCrossEntropy(s.logits, s.targets, v, s.max, s.sum, s.target, losses, &dl, 0.37f));
          PARITY_OK(ops::VocabParallelCrossEntropy(x, tg, v, maxd, sumd, targetd, outd, &dld, 0.37f));
          PARITY_CHECK(AllClose(ToHost(outd), losses, {2e-5, 1e-5}, At("VocabParallelCrossEntropy loss", t, n, v)));
          const Tolerance tol = t == kF32 ? Tolerance{1e-6, 2e-5} : Tolerance{1e-6, 8e-3};
          PARITY_CHECK(AllClose(ToHost(dld), dl, tol, At("VocabParallelCrossEntropy dlogits", t, n, v)));
          break;
        }
      }
    }
  return AssertionSuccess();
}
AssertionResult RowMaxCase(DType t, std::mt19937_64& r) { return VocabParallelCase(t, r, VocabPiece::kRowMax); }
AssertionResult RowSumExpCase(DType t, std::mt19937_64& r) { return VocabParallelCase(t, r, VocabPiece::kRowSumExp); }
AssertionResult PickTargetsCase(DType t, std::mt19937_64& r) {
  return VocabParallelCase(t, r, VocabPiece::kPickTargets);
}
AssertionResult VocabLossCase(DType t, std::mt19937_64& r) { return VocabParallelCase(t, r, VocabPiece::kLoss); }

// ---- Elementwise and reductions (sizes around the vector width, odd tails)

std::vector<int64_t> FlatSizes(std::mt19937_64& rng) { return {1, 19, 989, (1 << 20) + 3, Drawn(rng, 2, 100000)}; }

AssertionResult AddCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    Tensor a = Input({n}, t, rng), b = Input({n}, t, rng), out = Host({n}), outd = Dev({n}, t);
    PARITY_OK(ops::Add(a, b, out));
    PARITY_OK(ops::Add(ToDevice(a, t), ToDevice(b, t), outd));
    PARITY_CHECK(AllClose(ToHost(outd), out, Tol(t), At("Add", t, n)));
  }
  return AssertionSuccess();
}

AssertionResult AddInPlaceCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    Tensor y = Input({n}, t, rng), x = Input({n}, t, rng), yd = ToDevice(y, t);
    PARITY_OK(ops::AddInPlace(y, x));
    PARITY_OK(ops::AddInPlace(yd, ToDevice(x, t)));
    PARITY_CHECK(AllClose(ToHost(yd), y, Tol(t), At("AddInPlace", t, n)));
  }
  return AssertionSuccess();
}

AssertionResult ScaleCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    Tensor x = Input({n}, t, rng), xd = ToDevice(x, t);
    PARITY_OK(ops::Scale(x, -0.75f));
    PARITY_OK(ops::Scale(xd, -0.75f));
    PARITY_CHECK(AllClose(ToHost(xd), x, Tol(t), At("Scale", t, n)));
  }
  return AssertionSuccess();
}

// Reductions in double on both sides, of the same values.
AssertionResult ReductionCase(DType t, std::mt19937_64& rng, bool squares) {
  for (int64_t n : FlatSizes(rng)) {
    const Tensor x = Input({n}, t, rng), xd = ToDevice(x, t);
    absl::StatusOr<double> got = squares ? ops::SumSquares(xd) : ops::Sum(xd);
    absl::StatusOr<double> want = squares ? ops::SumSquares(x) : ops::Sum(x);
    PARITY_OK(got.status());
    PARITY_OK(want.status());
    const double budget = 1e-9 * static_cast<double>(n) + 1e-6 * std::fabs(*want);
    if (std::fabs(*got - *want) > budget) {
      return AssertionFailure() << At(squares ? "SumSquares" : "Sum", t, n) << ": " << *got << " vs CPU " << *want
                                << " (budget " << budget << ")";
    }
  }
  return AssertionSuccess();
}
AssertionResult SumSquaresCase(DType t, std::mt19937_64& rng) { return ReductionCase(t, rng, true); }
AssertionResult SumCase(DType t, std::mt19937_64& rng) { return ReductionCase(t, rng, false); }

// f32 -> t and t -> f32: the same rounding (nearest even) on both sides.
AssertionResult ConvertCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    const Tensor x = testing::RandomTensor({n}, kF32, rng, 0.001, 100.0);
    Tensor narrow = Tensor::Empty({n}, t), narrowd = Dev({n}, t);
    PARITY_OK(ops::Convert(x, narrow));
    PARITY_OK(ops::Convert(ToDevice(x, kF32), narrowd));
    Tensor wide = Host({n}), wided = Dev({n}, kF32);
    PARITY_OK(ops::Convert(narrow, wide));
    PARITY_OK(ops::Convert(narrowd, wided));
    PARITY_CHECK(AllClose(ToHost(wided), wide, {0, 0}, At("Convert round trip", t, n)));
    PARITY_CHECK(AllClose(ToHost(narrowd), t == kF32 ? narrow : wide, {0, 0}, At("Convert", t, n)));
  }
  return AssertionSuccess();
}

// f32 master weights; with t = bf16 each tensor also names a bf16 copy to
// write. Three steps, gradient scale 0.5, two tensors per launch.
AssertionResult AdamWCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : {int64_t{1}, int64_t{19}, int64_t{8193}, int64_t{100003}, Drawn(rng, 2, 20000)}) {
    struct Side {
      Tensor p[2], g[2], m[2], v[2], copy[2];
    } cpu, gpu;
    for (int i = 0; i < 2; ++i) {
      cpu.p[i] = Input({n + i}, kF32, rng);
      cpu.g[i] = Input({n + i}, kF32, rng);
      cpu.m[i] = Input({n + i}, kF32, rng, 0.0, 0.1);
      cpu.v[i] = Input({n + i}, kF32, rng, 0.001, 0.1);
      for (int64_t j = 0; j < n + i; ++j) cpu.v[i].data<float>()[j] = std::fabs(cpu.v[i].data<float>()[j]);
      cpu.copy[i] = Tensor::Empty({n + i}, DType::kBF16);
      gpu.p[i] = ToDevice(cpu.p[i], kF32);
      gpu.g[i] = ToDevice(cpu.g[i], kF32);
      gpu.m[i] = ToDevice(cpu.m[i], kF32);
      gpu.v[i] = ToDevice(cpu.v[i], kF32);
      gpu.copy[i] = Dev({n + i}, DType::kBF16);
    }
    auto list = [&](Side& s) {
      std::vector<ops::AdamWTensors> l;
      for (int i = 0; i < 2; ++i) l.push_back({&s.p[i], &s.g[i], &s.m[i], &s.v[i], t == kF32 ? nullptr : &s.copy[i]});
      return l;
    };
    for (int64_t step = 1; step <= 3; ++step) {
      const ops::AdamWParams hp{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f};
      PARITY_OK(ops::AdamW(list(cpu), hp));
      PARITY_OK(ops::AdamW(list(gpu), hp));
    }
    for (int i = 0; i < 2; ++i) {
      PARITY_CHECK(AllClose(ToHost(gpu.p[i]), cpu.p[i], {1e-6, 1e-5}, At("AdamW p", t, n + i)));
      PARITY_CHECK(AllClose(ToHost(gpu.m[i]), cpu.m[i], {1e-6, 1e-5}, At("AdamW m", t, n + i)));
      PARITY_CHECK(AllClose(ToHost(gpu.v[i]), cpu.v[i], {1e-7, 1e-5}, At("AdamW v", t, n + i)));
      PARITY_CHECK(AllClose(ToHost(gpu.g[i]), cpu.g[i], {0, 0}, At("AdamW leaves g", t, n + i)));
      if (t == kF32) continue;
      // The copy is exactly the device's updated p rounded to bf16.
      Tensor want = Tensor::Empty({n + i}, DType::kBF16), want_f32 = Host({n + i});
      PARITY_OK(ops::Convert(ToHost(gpu.p[i]), want));
      PARITY_OK(ops::Convert(want, want_f32));
      PARITY_CHECK(AllClose(ToHost(gpu.copy[i]), want_f32, {0, 0}, At("AdamW bf16 copy", t, n + i)));
    }
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
