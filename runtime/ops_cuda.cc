// The CUDA op table (op_table.h): one entry per op, called after the op's
// checks passed (so dtypes are f32 or bf16, statistics f32, shapes right),
// that makes one call into kernels/cuda on cuda::CurrentStream() and
// returns its Status: a CUDA, cuBLAS or cuDNN failure carries the failing
// call and file:line (kernels/cuda/check.h), and the dispatch puts the op's
// name in front. No entry syncs the stream except the two reductions whose
// result the host reads (SumSquares, Sum). Compiled only with
// BATON_HAVE_CUDA (ops_cpu.cc defines an empty table otherwise).
#ifdef BATON_HAVE_CUDA
#include <vector>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/stream.h"
#include "kernels/cuda/swiglu.h"
#include "kernels/cuda/vocab_parallel_ce.h"
#include "runtime/op_profile.h"
#include "runtime/op_table.h"

namespace baton::ops {
namespace {

cuda::Float Tag(const Tensor& t) { return t.dtype() == DType::kF32 ? cuda::Float::kF32 : cuda::Float::kBF16; }
float* F32(const Tensor& t) { return static_cast<float*>(t.raw()); }
const int32_t* I32(const Tensor& t) { return static_cast<const int32_t*>(t.raw()); }
void* RawOrNull(const Tensor* t) { return t != nullptr ? t->raw() : nullptr; }

// ---- GEMM, norms, RoPE, attention

absl::Status MatMulCuda(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, float alpha, float beta) {
  op_profile::Scope prof_scope("gemm (MatMul)");
  const int64_t m = c.dim(0), n = c.dim(1), k = ta ? a.dim(0) : a.dim(1);
  const cuda::GemmArgs g{Tag(a), Tag(c), ta, tb, m, n, k, alpha, beta,
                         a.raw(), a.dim(1), b.raw(), b.dim(1), c.raw(), n, nullptr};
  return cuda::Gemm(g, cuda::CurrentStream());
}

absl::Status LinearCuda(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  op_profile::Scope prof_scope("gemm fwd");
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  const cuda::GemmArgs g{Tag(x), Tag(y), false, true, n, out, in, 1.f, 0.f,
                         x.raw(), in, w.raw(), in, y.raw(), out, RawOrNull(b)};
  return cuda::Gemm(g, cuda::CurrentStream());
}

absl::Status LinearBackwardCuda(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                                Tensor* db, bool accumulate_dx) {
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  cudaStream_t s = cuda::CurrentStream();
  if (dx != nullptr) {  // dx (n, in) = dy (n, out) · w (out, in)
    op_profile::Scope prof_scope("gemm bwd dx");
    const cuda::GemmArgs g{Tag(x), Tag(*dx), false, false, n, in, out, 1.f, accumulate_dx ? 1.f : 0.f,
                           dy.raw(), out, w.raw(), in, dx->raw(), in, nullptr};
    BATON_RETURN_IF_ERROR(cuda::Gemm(g, s));
  }
  if (dw != nullptr) {  // dw (out, in) += dyᵀ (out, n) · x (n, in)
    op_profile::Scope prof_scope("gemm bwd dw");
    const cuda::GemmArgs g{Tag(x), Tag(*dw), true, false, out, in, n, 1.f, 1.f,
                           dy.raw(), out, x.raw(), in, dw->raw(), in, nullptr};
    BATON_RETURN_IF_ERROR(cuda::Gemm(g, s));
  }
  if (db != nullptr) {
    op_profile::Scope prof_scope("bias grad");
    BATON_RETURN_IF_ERROR(cuda::AccumulateColumnSums(Tag(dy), dy.raw(), n, out, Tag(*db), db->raw(), s));
  }
  return absl::OkStatus();
}

absl::Status RmsNormCuda(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd) {
  op_profile::Scope prof_scope("rmsnorm fwd");
  return cuda::RmsNormForward(Tag(x), x.raw(), w.raw(), eps, x.dim(0), x.dim(1), y.raw(), F32(rstd),
                              cuda::CurrentStream());
}

absl::Status AddRmsNormCuda(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                            Tensor& rstd) {
  op_profile::Scope prof_scope("residual add + rmsnorm fwd");
  return cuda::AddRmsNormForward(Tag(a), a.raw(), b.raw(), w.raw(), eps, a.dim(0), a.dim(1), sum.raw(), y.raw(),
                                 F32(rstd), cuda::CurrentStream());
}

absl::Status RmsNormBackwardCuda(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dx,
                                 Tensor& dw, const Tensor* dres) {
  op_profile::Scope prof_scope("rmsnorm bwd");
  return cuda::RmsNormBackward(Tag(x), Tag(dw), dy.raw(), x.raw(), w.raw(), F32(rstd), x.dim(0), x.dim(1),
                               RawOrNull(dres), dx.raw(), dw.raw(), cuda::CurrentStream());
}

absl::Status RopeOnCuda(Tensor& x, const RopeParams& p, bool inverse) {
  op_profile::Scope prof_scope("rope fwd+bwd");
  return cuda::RopeRotate(Tag(x), x.raw(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), p, inverse,
                          cuda::CurrentStream());
}
absl::Status RopeCuda(Tensor& x, const RopeParams& p) { return RopeOnCuda(x, p, false); }
absl::Status RopeBackwardCuda(Tensor& dx, const RopeParams& p) { return RopeOnCuda(dx, p, true); }

absl::StatusOr<cuda::AttentionDims> AttentionDimsOf(const Tensor& q, const Tensor& k) {
  const cuda::AttentionDims s{q.dim(0), q.dim(1), q.dim(2), k.dim(2), q.dim(3)};
  if (s.d > 256) {
    return absl::InvalidArgumentError(absl::StrCat("head dim ", s.d, " > 256 is not supported on CUDA"));
  }
  return s;
}

absl::Status AttentionCuda(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, Tensor& lse,
                           Tensor* probs) {
  op_profile::Scope prof_scope("attention fwd");
  BATON_ASSIGN_OR_RETURN(const cuda::AttentionDims s, AttentionDimsOf(q, k));
  return cuda::AttentionForward(Tag(q), q.raw(), k.raw(), v.raw(), s, out.raw(), F32(lse), cuda::CurrentStream());
}

absl::Status AttentionBackwardCuda(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq, Tensor& dk,
                                   Tensor& dv) {
  op_profile::Scope prof_scope("attention bwd");
  BATON_ASSIGN_OR_RETURN(const cuda::AttentionDims s, AttentionDimsOf(q, k));
  return cuda::AttentionBackward(Tag(q), dout.raw(), q.raw(), k.raw(), v.raw(), out.raw(), F32(lse), s, dq.raw(),
                                 dk.raw(), dv.raw(), cuda::CurrentStream());
}

// ---- SwiGLU, embedding, cross-entropy

absl::Status SwiGluCuda(const Tensor& gate, const Tensor& up, Tensor& h) {
  op_profile::Scope prof_scope("swiglu fwd");
  return cuda::SwiGluForward(Tag(gate), gate.raw(), up.raw(), gate.numel(), h.raw(), cuda::CurrentStream());
}

absl::Status SwiGluBackwardCuda(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate,
                                Tensor& dup) {
  op_profile::Scope prof_scope("swiglu bwd");
  return cuda::SwiGluBackward(Tag(gate), dh.raw(), gate.raw(), up.raw(), gate.numel(), dgate.raw(), dup.raw(),
                              cuda::CurrentStream());
}

absl::Status EmbeddingCuda(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out) {
  op_profile::Scope prof_scope("embedding fwd");
  return cuda::EmbeddingForward(Tag(table), I32(tokens), table.raw(), vocab_start, table.dim(0), tokens.dim(0),
                                table.dim(1), out.raw(), cuda::CurrentStream());
}

absl::Status EmbeddingBackwardCuda(const Tensor& dout, const Tensor& tokens, int64_t vocab_start, Tensor& dtable) {
  op_profile::Scope prof_scope("embedding bwd");
  return cuda::EmbeddingBackward(Tag(dout), Tag(dtable), dout.raw(), I32(tokens), vocab_start, dtable.dim(0),
                                 tokens.dim(0), dtable.dim(1), dtable.raw(), cuda::CurrentStream());
}

absl::Status SoftmaxCrossEntropyCuda(const Tensor& logits, const Tensor& targets, Tensor& losses, Tensor* dlogits,
                                     float grad_scale) {
  op_profile::Scope prof_scope("softmax cross-entropy");
  return cuda::SoftmaxCrossEntropy(Tag(logits), logits.raw(), I32(targets), logits.dim(0), logits.dim(1),
                                   F32(losses), RawOrNull(dlogits), grad_scale, cuda::CurrentStream());
}

absl::Status RowMaxCuda(const Tensor& logits, Tensor& max) {
  op_profile::Scope prof_scope("vocab-parallel ce (row max)");
  return cuda::RowMax(Tag(logits), logits.raw(), logits.dim(0), logits.dim(1), F32(max), cuda::CurrentStream());
}

absl::Status RowSumExpCuda(const Tensor& logits, const Tensor& max, Tensor& sum) {
  op_profile::Scope prof_scope("vocab-parallel ce (sum exp)");
  return cuda::RowSumExp(Tag(logits), logits.raw(), F32(max), logits.dim(0), logits.dim(1), F32(sum),
                         cuda::CurrentStream());
}

absl::Status PickTargetsCuda(const Tensor& logits, const Tensor& targets, int64_t vocab_start, Tensor& target) {
  op_profile::Scope prof_scope("vocab-parallel ce (pick targets)");
  return cuda::PickTargets(Tag(logits), logits.raw(), I32(targets), vocab_start, logits.dim(0), logits.dim(1),
                           F32(target), cuda::CurrentStream());
}

absl::Status VocabParallelCrossEntropyCuda(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                                           const Tensor& max, const Tensor& sum, const Tensor& target_logit,
                                           Tensor& losses, Tensor* dlogits, float grad_scale) {
  op_profile::Scope prof_scope("vocab-parallel ce (loss, grad)");
  return cuda::VocabParallelCrossEntropy(Tag(logits), logits.raw(), I32(targets), vocab_start, F32(max), F32(sum),
                                         F32(target_logit), logits.dim(0), logits.dim(1), F32(losses),
                                         RawOrNull(dlogits), grad_scale, cuda::CurrentStream());
}

// ---- Elementwise, reductions, Convert, AdamW

absl::Status AddCuda(const Tensor& a, const Tensor& b, Tensor& out) {
  op_profile::Scope prof_scope("residual add");
  return cuda::Add(Tag(a), a.raw(), b.raw(), a.numel(), out.raw(), cuda::CurrentStream());
}

absl::Status AddInPlaceCuda(Tensor& y, const Tensor& x) {
  op_profile::Scope prof_scope("residual add");
  return cuda::AddInPlace(Tag(y), y.raw(), x.raw(), y.numel(), cuda::CurrentStream());
}

absl::Status ScaleCuda(Tensor& x, float s) {
  op_profile::Scope prof_scope("grad scale (clip)");
  return cuda::Scale(Tag(x), x.raw(), x.numel(), s, cuda::CurrentStream());
}

absl::StatusOr<double> SumSquaresCuda(const Tensor& x) {
  op_profile::Scope prof_scope("grad norm (clip)");
  return cuda::SumSquares(Tag(x), x.raw(), x.numel(), cuda::CurrentStream());
}

absl::StatusOr<double> SumCuda(const Tensor& x) {
  op_profile::Scope prof_scope("loss sum");
  return cuda::Sum(Tag(x), x.raw(), x.numel(), cuda::CurrentStream());
}

absl::Status ConvertCuda(const Tensor& x, Tensor& out) {
  op_profile::Scope prof_scope("dtype convert");
  if (x.dtype() == DType::kF64 || out.dtype() == DType::kF64) {
    return absl::InvalidArgumentError(
        absl::StrCat(x.DebugString(), " -> ", out.DebugString(), ": CUDA converts between f32 and bf16"));
  }
  return cuda::Convert(Tag(x), x.raw(), x.numel(), Tag(out), out.raw(), cuda::CurrentStream());
}

// Multi-tensor AdamW: the list is translated into the kernel's descriptors
// in a buffer kept per thread, so a step allocates nothing once warm.
absl::Status AdamWCuda(std::span<const AdamWTensors> list, const AdamWParams& hp) {
  op_profile::Scope prof_scope("adamw (multi-tensor)");
  thread_local std::vector<cuda::AdamWTensor> descs;
  descs.clear();
  for (const AdamWTensors& t : list) {
    if (t.p->dtype() != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat("p is ", t.p->DebugString(), "; CUDA AdamW takes f32"));
    }
    descs.push_back({F32(*t.p), static_cast<const float*>(t.g->raw()), F32(*t.m), F32(*t.v), t.p->numel(),
                     RawOrNull(t.compute)});
  }
  const cuda::AdamWHyper h{hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.step, hp.grad_scale};
  return cuda::AdamWMultiTensor(descs.data(), static_cast<int>(descs.size()), h, cuda::CurrentStream());
}

}  // namespace

constinit const OpKernels kCudaKernels{
    .rules = {.second_float = DType::kBF16, .f32_statistics = true, .f32_gradients = true, .stores_probs = false},
    .MatMul = MatMulCuda,
    .Linear = LinearCuda,
    .LinearBackward = LinearBackwardCuda,
    .RmsNorm = RmsNormCuda,
    .AddRmsNorm = AddRmsNormCuda,
    .RmsNormBackward = RmsNormBackwardCuda,
    .Rope = RopeCuda,
    .RopeBackward = RopeBackwardCuda,
    .Attention = AttentionCuda,
    .AttentionBackward = AttentionBackwardCuda,
    .SwiGlu = SwiGluCuda,
    .SwiGluBackward = SwiGluBackwardCuda,
    .Embedding = EmbeddingCuda,
    .EmbeddingBackward = EmbeddingBackwardCuda,
    .SoftmaxCrossEntropy = SoftmaxCrossEntropyCuda,
    .RowMax = RowMaxCuda,
    .RowSumExp = RowSumExpCuda,
    .PickTargets = PickTargetsCuda,
    .VocabParallelCrossEntropy = VocabParallelCrossEntropyCuda,
    .Add = AddCuda,
    .AddInPlace = AddInPlaceCuda,
    .Scale = ScaleCuda,
    .SumSquares = SumSquaresCuda,
    .Sum = SumCuda,
    .Convert = ConvertCuda,
    .AdamW = AdamWCuda,
};

}  // namespace baton::ops
#endif  // BATON_HAVE_CUDA
