// The CPU op table (op_table.h): one entry per op, called after the op's
// checks passed, that picks the element type (f32 or f64) and calls the
// reference kernel in kernels/cpu. Complete: every op of BATON_OP_LIST has a
// CPU kernel, which is what the CUDA kernels are held to.
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/convert.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "kernels/cpu/vocab_parallel_ce.h"
#include "runtime/op_table.h"

namespace baton::ops {
namespace {

// Calls f(float{}) or f(double{}) for the (checked) dtype; the generic
// lambda names the element type as decltype(tag).
template <typename F>
absl::Status ByType(DType dtype, F&& f) {
  if (dtype == DType::kF64) {
    f(double{});
  } else {
    f(float{});
  }
  return absl::OkStatus();
}
#define BATON_CPU_T using T = decltype(tag)

// ---- GEMM, norms, RoPE, attention

absl::Status MatMulCpu(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, float alpha, float beta) {
  const int64_t m = c.dim(0), n = c.dim(1), k = ta ? a.dim(0) : a.dim(1);
  return ByType(a.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::Gemm<T>(ta, tb, m, n, k, static_cast<T>(alpha), a.data<T>(), a.dim(1), b.data<T>(), b.dim(1),
                 static_cast<T>(beta), c.data<T>(), n);
  });
}

absl::Status LinearCpu(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  return ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::Gemm<T>(false, true, n, out, in, T(1), x.data<T>(), in, w.data<T>(), in, T(0), y.data<T>(), out);
    if (b != nullptr) cpu::AddRowBias<T>(b->data<T>(), n, out, y.data<T>());
  });
}

absl::Status LinearBackwardCpu(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                               Tensor* db, bool accumulate_dx) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  return ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    if (dx != nullptr)  // dx (n, in) = dy (n, out) · w (out, in)
      cpu::Gemm<T>(false, false, n, in, out, T(1), dy.data<T>(), out, w.data<T>(), in, T(accumulate_dx ? 1 : 0),
                   dx->data<T>(), in);
    if (dw != nullptr)  // dw (out, in) += dyᵀ (out, n) · x (n, in)
      cpu::Gemm<T>(true, false, out, in, n, T(1), dy.data<T>(), out, x.data<T>(), in, T(1), dw->data<T>(), in);
    if (db != nullptr) cpu::AccumulateColumnSums<T>(dy.data<T>(), n, out, db->data<T>());
  });
}

absl::Status RmsNormCpu(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd) {
  return ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::RmsNormForward<T>(x.data<T>(), w.data<T>(), static_cast<T>(eps), x.dim(0), x.dim(1), y.data<T>(),
                           rstd.data<T>());
  });
}

// Add, then RmsNorm of the sum: the same bits as the two ops.
absl::Status AddRmsNormCpu(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                           Tensor& rstd) {
  return ByType(a.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::Add<T>(a.data<T>(), b.data<T>(), a.numel(), sum.data<T>());
    cpu::RmsNormForward<T>(sum.data<T>(), w.data<T>(), static_cast<T>(eps), a.dim(0), a.dim(1), y.data<T>(),
                           rstd.data<T>());
  });
}

absl::Status RmsNormBackwardCpu(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dx,
                                Tensor& dw, const Tensor* dres) {
  return ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::RmsNormBackward<T>(dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<T>(), x.dim(0), x.dim(1),
                            dres != nullptr ? dres->data<T>() : nullptr, dx.data<T>(), dw.data<T>());
  });
}

absl::Status RopeOnCpu(Tensor& x, const RopeParams& p, bool inverse) {
  return ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::RopeRotate<T>(x.data<T>(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), p, inverse);
  });
}
absl::Status RopeCpu(Tensor& x, const RopeParams& p) { return RopeOnCpu(x, p, false); }
absl::Status RopeBackwardCpu(Tensor& dx, const RopeParams& p) { return RopeOnCpu(dx, p, true); }

absl::Status AttentionCpu(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, Tensor& lse,
                          Tensor* probs) {
  return ByType(q.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::AttentionForward<T>(q.data<T>(), k.data<T>(), v.data<T>(), q.dim(0), q.dim(1), q.dim(2), k.dim(2),
                             q.dim(3), out.data<T>(), lse.data<T>(), probs != nullptr ? probs->data<T>() : nullptr);
  });
}

absl::Status AttentionBackwardCpu(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq, Tensor& dk,
                                  Tensor& dv) {
  return ByType(q.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::AttentionBackward<T>(dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), lse.data<T>(),
                              probs != nullptr ? probs->data<T>() : nullptr, q.dim(0), q.dim(1), q.dim(2), k.dim(2),
                              q.dim(3), dq.data<T>(), dk.data<T>(), dv.data<T>());
  });
}

// ---- SwiGLU, embedding, cross-entropy

absl::Status SwiGluCpu(const Tensor& gate, const Tensor& up, Tensor& h) {
  return ByType(gate.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::SwiGluForward<T>(gate.data<T>(), up.data<T>(), gate.numel(), h.data<T>());
  });
}

absl::Status SwiGluBackwardCpu(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate, Tensor& dup) {
  return ByType(gate.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::SwiGluBackward<T>(dh.data<T>(), gate.data<T>(), up.data<T>(), gate.numel(), dgate.data<T>(),
                           dup.data<T>());
  });
}

absl::Status EmbeddingCpu(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out) {
  return ByType(table.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::EmbeddingForward<T>(tokens.data<int32_t>(), table.data<T>(), vocab_start, table.dim(0), tokens.dim(0),
                             table.dim(1), out.data<T>());
  });
}

absl::Status EmbeddingBackwardCpu(const Tensor& dout, const Tensor& tokens, int64_t vocab_start, Tensor& dtable) {
  return ByType(dtable.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::EmbeddingBackward<T>(dout.data<T>(), tokens.data<int32_t>(), vocab_start, dtable.dim(0), tokens.dim(0),
                              dtable.dim(1), dtable.data<T>());
  });
}

absl::Status SoftmaxCrossEntropyCpu(const Tensor& logits, const Tensor& targets, Tensor& losses, Tensor* dlogits,
                                    float grad_scale) {
  return ByType(logits.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::SoftmaxCrossEntropy<T>(logits.data<T>(), targets.data<int32_t>(), logits.dim(0), logits.dim(1),
                                losses.data<T>(), dlogits != nullptr ? dlogits->data<T>() : nullptr,
                                static_cast<T>(grad_scale));
  });
}

absl::Status RowMaxCpu(const Tensor& logits, Tensor& max) {
  return ByType(logits.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::RowMax<T>(logits.data<T>(), logits.dim(0), logits.dim(1), max.data<T>());
  });
}

absl::Status RowSumExpCpu(const Tensor& logits, const Tensor& max, Tensor& sum) {
  return ByType(logits.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::RowSumExp<T>(logits.data<T>(), max.data<T>(), logits.dim(0), logits.dim(1), sum.data<T>());
  });
}

absl::Status PickTargetsCpu(const Tensor& logits, const Tensor& targets, int64_t vocab_start, Tensor& target) {
  return ByType(logits.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::PickTargets<T>(logits.data<T>(), targets.data<int32_t>(), vocab_start, logits.dim(0), logits.dim(1),
                        target.data<T>());
  });
}

absl::Status VocabParallelCrossEntropyCpu(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                                          const Tensor& max, const Tensor& sum, const Tensor& target_logit,
                                          Tensor& losses, Tensor* dlogits, float grad_scale) {
  return ByType(logits.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::VocabParallelCrossEntropy<T>(logits.data<T>(), targets.data<int32_t>(), vocab_start, max.data<T>(),
                                      sum.data<T>(), target_logit.data<T>(), logits.dim(0), logits.dim(1),
                                      losses.data<T>(), dlogits != nullptr ? dlogits->data<T>() : nullptr,
                                      grad_scale);
  });
}

// ---- Elementwise, reductions, Convert, AdamW

absl::Status AddCpu(const Tensor& a, const Tensor& b, Tensor& out) {
  return ByType(a.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::Add<T>(a.data<T>(), b.data<T>(), a.numel(), out.data<T>());
  });
}

absl::Status AddInPlaceCpu(Tensor& y, const Tensor& x) {
  return ByType(y.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::AddInPlace<T>(y.data<T>(), x.data<T>(), y.numel());
  });
}

absl::Status ScaleCpu(Tensor& x, float s) {
  return ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    cpu::Scale<T>(x.data<T>(), x.numel(), static_cast<T>(s));
  });
}

absl::StatusOr<double> SumSquaresCpu(const Tensor& x) {
  double r = 0;
  (void)ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    r = cpu::SumSquares<T>(x.data<T>(), x.numel());
  });
  return r;
}

absl::StatusOr<double> SumCpu(const Tensor& x) {
  double r = 0;
  (void)ByType(x.dtype(), [&](auto tag) {
    BATON_CPU_T;
    r = cpu::Sum<T>(x.data<T>(), x.numel());
  });
  return r;
}

absl::Status ConvertCpu(const Tensor& x, Tensor& out) {
  const DType from = x.dtype(), to = out.dtype();
  const int64_t n = x.numel();
  if (from == to) {
    out.CopyFrom(x);
  } else if (from == DType::kF32 && to == DType::kBF16) {
    cpu::F32ToBf16(x.data<float>(), n, static_cast<uint16_t*>(out.raw()));
  } else if (from == DType::kBF16 && to == DType::kF32) {
    cpu::Bf16ToF32(static_cast<const uint16_t*>(x.raw()), n, out.data<float>());
  } else if (from == DType::kF32 && to == DType::kF64) {
    for (int64_t i = 0; i < n; ++i) out.data<double>()[i] = x.data<float>()[i];
  } else if (from == DType::kF64 && to == DType::kF32) {
    for (int64_t i = 0; i < n; ++i) out.data<float>()[i] = static_cast<float>(x.data<double>()[i]);
  } else {
    return absl::UnimplementedError(
        absl::StrCat("no CPU conversion ", DTypeName(from), " -> ", DTypeName(to), " (go through f32)"));
  }
  return absl::OkStatus();
}

absl::Status AdamWCpu(std::span<const AdamWTensors> list, const AdamWParams& hp) {
  for (const AdamWTensors& t : list) {
    (void)ByType(t.p->dtype(), [&](auto tag) {
      BATON_CPU_T;
      cpu::AdamWStep<T>(t.p->data<T>(), t.g->data<T>(), t.m->data<T>(), t.v->data<T>(), t.p->numel(), hp.lr,
                        hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.step, hp.grad_scale);
    });
    if (t.compute != nullptr) BATON_RETURN_IF_ERROR(ConvertCpu(*t.p, *t.compute));
  }
  return absl::OkStatus();
}

#undef BATON_CPU_T

}  // namespace

constinit const OpKernels kCpuKernels{
    .rules = {.second_float = DType::kF64, .f32_statistics = false, .f32_gradients = false, .stores_probs = true},
    .MatMul = MatMulCpu,
    .Linear = LinearCpu,
    .LinearBackward = LinearBackwardCpu,
    .RmsNorm = RmsNormCpu,
    .AddRmsNorm = AddRmsNormCpu,
    .RmsNormBackward = RmsNormBackwardCpu,
    .Rope = RopeCpu,
    .RopeBackward = RopeBackwardCpu,
    .Attention = AttentionCpu,
    .AttentionBackward = AttentionBackwardCpu,
    .SwiGlu = SwiGluCpu,
    .SwiGluBackward = SwiGluBackwardCpu,
    .Embedding = EmbeddingCpu,
    .EmbeddingBackward = EmbeddingBackwardCpu,
    .SoftmaxCrossEntropy = SoftmaxCrossEntropyCpu,
    .RowMax = RowMaxCpu,
    .RowSumExp = RowSumExpCpu,
    .PickTargets = PickTargetsCpu,
    .VocabParallelCrossEntropy = VocabParallelCrossEntropyCpu,
    .Add = AddCpu,
    .AddInPlace = AddInPlaceCpu,
    .Scale = ScaleCpu,
    .SumSquares = SumSquaresCpu,
    .Sum = SumCpu,
    .Convert = ConvertCpu,
    .AdamW = AdamWCpu,
};

#ifndef BATON_HAVE_CUDA
// No CUDA backend in this build: every op is Unimplemented on CUDA tensors.
constinit const OpKernels kCudaKernels{};
#endif

}  // namespace baton::ops
