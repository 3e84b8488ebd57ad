// The pointwise, embedding, cross-entropy, vocab-parallel, reduction,
// Convert and AdamW cases of the GPU parity test (op_parity_gpu_test.cc,
// which holds the case table and the GEMM, norm, RoPE and attention cases).
// Each runs its op on CUDA and on the CPU reference over several shapes and
// returns the first mismatch. Included only where BATON_HAVE_CUDA is defined.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/ops.h"
#include "tests/kernels/op_parity_util.h"

namespace baton::testing::parity {

// ---- SwiGLU, embedding, cross-entropy

inline AssertionResult SwiGluCase(DType t, std::mt19937_64& rng, bool backward) {
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
inline AssertionResult SwiGluForwardCase(DType t, std::mt19937_64& rng) { return SwiGluCase(t, rng, false); }
inline AssertionResult SwiGluBackwardCase(DType t, std::mt19937_64& rng) { return SwiGluCase(t, rng, true); }

// A vocabulary shard of 300 ids at vocab_start; tokens over [0, 500), so
// some fall outside the shard (zero rows forward, no gradient back).
inline AssertionResult EmbeddingCase(DType t, std::mt19937_64& rng, bool backward) {
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
  if (backward) {  // long runs of one token (byte-level text) and columns spread over several blocks
    const int64_t n = 3001, c = 517;
    const Tensor tokens = Ids(n, 3, rng, false), td = ToDeviceI32(tokens);
    Tensor dout = Input({n, c}, t, rng), dtable = Input({kShard, c}, kF32, rng);
    Tensor dtd = ToDevice(dtable, kF32);
    PARITY_OK(ops::EmbeddingBackward(dout, tokens, 0, dtable));
    PARITY_OK(ops::EmbeddingBackward(ToDevice(dout, t), td, 0, dtd));
    PARITY_CHECK(AllClose(ToHost(dtd), dtable, {0, 0}, At("EmbeddingBackward (long runs)", t, 0, n, c)));
  }
  return AssertionSuccess();
}
inline AssertionResult EmbeddingForwardCase(DType t, std::mt19937_64& rng) { return EmbeddingCase(t, rng, false); }
inline AssertionResult EmbeddingBackwardCase(DType t, std::mt19937_64& rng) { return EmbeddingCase(t, rng, true); }

inline AssertionResult SoftmaxCrossEntropyCase(DType t, std::mt19937_64& rng) {
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
inline absl::StatusOr<VocabShard> MakeShard(int64_t n, int64_t v, DType t, std::mt19937_64& rng) {
  VocabShard s{n, v, Input({n, v}, t, rng, 0.05, 6.0), Ids(n, 3 * v - 1, rng, true), Host({n}), Host({n}), Host({n})};
  s.targets.data<int32_t>()[0] = static_cast<int32_t>(v + (v - 1) / 2);  // one hit in the shard always
  BATON_RETURN_IF_ERROR(ops::RowMax(s.logits, s.max));
  BATON_RETURN_IF_ERROR(ops::RowSumExp(s.logits, s.max, s.sum));
  BATON_RETURN_IF_ERROR(ops::PickTargets(s.logits, s.targets, v, s.target));
  return s;
}

enum class VocabPiece { kRowMax, kRowSumExp, kPickTargets, kLoss };

inline AssertionResult VocabParallelCase(DType t, std::mt19937_64& rng, VocabPiece piece) {
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
inline AssertionResult RowMaxCase(DType t, std::mt19937_64& r) { return VocabParallelCase(t, r, VocabPiece::kRowMax); }
inline AssertionResult RowSumExpCase(DType t, std::mt19937_64& r) { return VocabParallelCase(t, r, VocabPiece::kRowSumExp); }
inline AssertionResult PickTargetsCase(DType t, std::mt19937_64& r) {
  return VocabParallelCase(t, r, VocabPiece::kPickTargets);
}
inline AssertionResult VocabLossCase(DType t, std::mt19937_64& r) { return VocabParallelCase(t, r, VocabPiece::kLoss); }

// ---- Elementwise and reductions (sizes around the vector width, odd tails)

inline std::vector<int64_t> FlatSizes(std::mt19937_64& rng) { return {1, 19, 989, (1 << 20) + 3, Drawn(rng, 2, 100000)}; }

inline AssertionResult AddCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    Tensor a = Input({n}, t, rng), b = Input({n}, t, rng), out = Host({n}), outd = Dev({n}, t);
    PARITY_OK(ops::Add(a, b, out));
    PARITY_OK(ops::Add(ToDevice(a, t), ToDevice(b, t), outd));
    PARITY_CHECK(AllClose(ToHost(outd), out, Tol(t), At("Add", t, n)));
  }
  return AssertionSuccess();
}

inline AssertionResult AddInPlaceCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    Tensor y = Input({n}, t, rng), x = Input({n}, t, rng), yd = ToDevice(y, t);
    PARITY_OK(ops::AddInPlace(y, x));
    PARITY_OK(ops::AddInPlace(yd, ToDevice(x, t)));
    PARITY_CHECK(AllClose(ToHost(yd), y, Tol(t), At("AddInPlace", t, n)));
  }
  return AssertionSuccess();
}

inline AssertionResult ScaleCase(DType t, std::mt19937_64& rng) {
  for (int64_t n : FlatSizes(rng)) {
    Tensor x = Input({n}, t, rng), xd = ToDevice(x, t);
    PARITY_OK(ops::Scale(x, -0.75f));
    PARITY_OK(ops::Scale(xd, -0.75f));
    PARITY_CHECK(AllClose(ToHost(xd), x, Tol(t), At("Scale", t, n)));
  }
  return AssertionSuccess();
}

// Reductions in double on both sides, of the same values.
inline AssertionResult ReductionCase(DType t, std::mt19937_64& rng, bool squares) {
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
inline AssertionResult SumSquaresCase(DType t, std::mt19937_64& rng) { return ReductionCase(t, rng, true); }
inline AssertionResult SumCase(DType t, std::mt19937_64& rng) { return ReductionCase(t, rng, false); }

// f32 -> t and t -> f32: the same rounding (nearest even) on both sides.
inline AssertionResult ConvertCase(DType t, std::mt19937_64& rng) {
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
inline AssertionResult AdamWCase(DType t, std::mt19937_64& rng) {
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

}  // namespace baton::testing::parity
