// The CUDA op table (see ops_cuda.h): entry checks in the style of
// op_checks.h, then one call into kernels/cuda on the current stream.
// Compiled only with BATON_HAVE_CUDA; an empty file otherwise.
#ifdef BATON_HAVE_CUDA
#include "runtime/ops_cuda.h"
#include "runtime/op_profile.h"

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
#include "runtime/op_checks.h"

namespace baton::ops::cuda_impl {
namespace {

using internal::CheckCudaContiguous;
using internal::CheckCudaFloat;
using internal::CheckRank;
using internal::CheckSameDType;
using internal::CheckShape;

cuda::Float Tag(const Tensor& t) {
  return t.dtype() == DType::kF32 ? cuda::Float::kF32 : cuda::Float::kBF16;
}

// A CUDA float tensor with ref's dtype and `want` shape.
void CheckLike(const char* op, const char* name, const Tensor& t, const Tensor& ref,
               const Shape& want) {
  CheckCudaFloat(op, name, t);
  CheckSameDType(op, name, t, ref);
  CheckShape(op, name, t, want);
}
// A gradient accumulator: ref's dtype or f32.
void CheckGrad(const char* op, const char* name, const Tensor& t, const Tensor& ref,
               const Shape& want) {
  CheckCudaFloat(op, name, t);
  BATON_OP_CHECK(t.dtype() == ref.dtype() || t.dtype() == DType::kF32, op, ": ", name, " is ",
                 t.DebugString(), ", expected f32 or ", DTypeName(ref.dtype()));
  CheckShape(op, name, t, want);
}
void CheckF32(const char* op, const char* name, const Tensor& t, const Shape& want) {
  CheckCudaContiguous(op, name, t);
  BATON_OP_CHECK(t.dtype() == DType::kF32 && t.shape() == want, op, ": ", name, " is ",
                 t.DebugString(), ", expected f32", ShapeString(want));
}
void CheckTokens(const char* op, const char* name, const Tensor& t, int64_t n) {
  CheckCudaContiguous(op, name, t);
  BATON_OP_CHECK(t.dtype() == DType::kI32 && t.shape() == Shape{n}, op, ": ", name, " is ",
                 t.DebugString(), ", expected i32[", n, "]");
}
void Ok(const char* op, const absl::Status& st) {
  BATON_OP_CHECK(st.ok(), op, ": ", st.ToString());
}

}  // namespace

// ---- GEMM

void MatMul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
            float beta) {
  op_profile::Scope prof_scope("gemm (MatMul)");
  constexpr const char* kOp = "MatMul";
  CheckCudaFloat(kOp, "a", a);
  CheckRank(kOp, "a", a, 2);
  CheckLike(kOp, "b", b, a, b.shape());
  CheckRank(kOp, "b", b, 2);
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  BATON_OP_CHECK(k == kb, kOp, ": inner dims differ: a ", a.DebugString(), " · b ",
                 b.DebugString());
  CheckGrad(kOp, "c", c, a, {m, n});
  cuda::GemmArgs g{Tag(a), Tag(c), trans_a, trans_b, m, n, k, alpha, beta,
                   a.raw(), a.dim(1), b.raw(), b.dim(1), c.raw(), n, nullptr};
  Ok(kOp, cuda::Gemm(g, cuda::CurrentStream()));
}

void Linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  op_profile::Scope prof_scope("gemm fwd");
  constexpr const char* kOp = "Linear";
  CheckCudaFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  CheckLike(kOp, "w", w, x, w.shape());
  CheckRank(kOp, "w", w, 2);
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  BATON_OP_CHECK(w.dim(1) == in, kOp, ": x ", x.DebugString(), " does not match w ",
                 w.DebugString(), " (out, in)");
  const bool has_bias = b != nullptr && b->defined();
  if (has_bias) CheckLike(kOp, "b", *b, x, {out});
  CheckLike(kOp, "y", y, x, {n, out});
  cuda::GemmArgs g{Tag(x), Tag(y), false, true, n, out, in, 1.f, 0.f,
                   x.raw(), in, w.raw(), in, y.raw(), out, has_bias ? b->raw() : nullptr};
  Ok(kOp, cuda::Gemm(g, cuda::CurrentStream()));
}

void LinearBackward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                    Tensor* db, bool accumulate_dx) {
  constexpr const char* kOp = "LinearBackward";
  CheckCudaFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  CheckLike(kOp, "w", w, x, w.shape());
  CheckRank(kOp, "w", w, 2);
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  BATON_OP_CHECK(w.dim(1) == in, kOp, ": x ", x.DebugString(), " does not match w ",
                 w.DebugString(), " (out, in)");
  CheckLike(kOp, "dy", dy, x, {n, out});
  const bool has_dx = dx != nullptr && dx->defined();
  const bool has_dw = dw != nullptr && dw->defined();
  const bool has_db = db != nullptr && db->defined();
  if (has_dx) CheckLike(kOp, "dx", *dx, x, {n, in});
  if (has_dw) CheckGrad(kOp, "dw", *dw, x, {out, in});
  if (has_db) CheckGrad(kOp, "db", *db, x, {out});
  cudaStream_t s = cuda::CurrentStream();
  if (has_dx) {  // dx (n, in) = dy (n, out) · w (out, in)
    op_profile::Scope prof_scope("gemm bwd dx");
    cuda::GemmArgs g{Tag(x), Tag(*dx), false, false, n, in, out, 1.f, accumulate_dx ? 1.f : 0.f,
                     dy.raw(), out, w.raw(), in, dx->raw(), in, nullptr};
    Ok(kOp, cuda::Gemm(g, s));
  }
  if (has_dw) {  // dw (out, in) += dyᵀ (out, n) · x (n, in)
    op_profile::Scope prof_scope("gemm bwd dw");
    cuda::GemmArgs g{Tag(x), Tag(*dw), true, false, out, in, n, 1.f, 1.f,
                     dy.raw(), out, x.raw(), in, dw->raw(), in, nullptr};
    Ok(kOp, cuda::Gemm(g, s));
  }
  if (has_db) {
    op_profile::Scope prof_scope("bias grad");
    Ok(kOp, cuda::AccumulateColumnSums(Tag(dy), dy.raw(), n, out, Tag(*db), db->raw(), s));
  }
}

// ---- RMSNorm, RoPE

void RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd) {
  op_profile::Scope prof_scope("rmsnorm fwd");
  constexpr const char* kOp = "RmsNorm";
  CheckCudaFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  const int64_t n = x.dim(0), c = x.dim(1);
  CheckLike(kOp, "w", w, x, {c});
  CheckLike(kOp, "y", y, x, {n, c});
  CheckF32(kOp, "rstd", rstd, {n});
  Ok(kOp, cuda::RmsNormForward(Tag(x), x.raw(), w.raw(), eps, n, c, y.raw(),
                               static_cast<float*>(rstd.raw()), cuda::CurrentStream()));
}

void AddRmsNorm(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                Tensor& rstd) {
  op_profile::Scope prof_scope("residual add + rmsnorm fwd");
  constexpr const char* kOp = "AddRmsNorm";
  CheckCudaFloat(kOp, "a", a);
  CheckRank(kOp, "a", a, 2);
  const int64_t n = a.dim(0), c = a.dim(1);
  CheckLike(kOp, "b", b, a, {n, c});
  CheckLike(kOp, "w", w, a, {c});
  CheckLike(kOp, "sum", sum, a, {n, c});
  CheckLike(kOp, "y", y, a, {n, c});
  CheckF32(kOp, "rstd", rstd, {n});
  Ok(kOp, cuda::AddRmsNormForward(Tag(a), a.raw(), b.raw(), w.raw(), eps, n, c, sum.raw(), y.raw(),
                                  static_cast<float*>(rstd.raw()), cuda::CurrentStream()));
}

void RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                     Tensor& dx, Tensor& dw, const Tensor* dres) {
  op_profile::Scope prof_scope("rmsnorm bwd");
  constexpr const char* kOp = "RmsNormBackward";
  CheckCudaFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  const int64_t n = x.dim(0), c = x.dim(1);
  CheckLike(kOp, "dy", dy, x, {n, c});
  CheckLike(kOp, "w", w, x, {c});
  CheckF32(kOp, "rstd", rstd, {n});
  CheckLike(kOp, "dx", dx, x, {n, c});
  CheckGrad(kOp, "dw", dw, x, {c});
  const bool has_dres = dres != nullptr && dres->defined();
  if (has_dres) CheckLike(kOp, "dres", *dres, x, {n, c});
  Ok(kOp, cuda::RmsNormBackward(Tag(x), Tag(dw), dy.raw(), x.raw(), w.raw(),
                                static_cast<const float*>(rstd.raw()), n, c,
                                has_dres ? dres->raw() : nullptr, dx.raw(), dw.raw(),
                                cuda::CurrentStream()));
}

void Rope(Tensor& x, const RopeParams& p, bool inverse) {
  op_profile::Scope prof_scope("rope fwd+bwd");
  const char* op = inverse ? "RopeBackward" : "Rope";
  CheckCudaFloat(op, "x", x);
  CheckRank(op, "x", x, 4);
  BATON_OP_CHECK(x.dim(3) % 2 == 0, op, ": head dim of x ", x.DebugString(), " is odd");
  Ok(op, cuda::RopeRotate(Tag(x), x.raw(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), p, inverse,
                          cuda::CurrentStream()));
}

// ---- Attention

namespace {
cuda::AttentionDims CheckAttention(const char* op, const Tensor& q, const Tensor& k,
                                   const Tensor& v) {
  CheckCudaFloat(op, "q", q);
  CheckRank(op, "q", q, 4);
  CheckCudaFloat(op, "k", k);
  CheckRank(op, "k", k, 4);
  const cuda::AttentionDims s{q.dim(0), q.dim(1), q.dim(2), k.dim(2), q.dim(3)};
  CheckLike(op, "k", k, q, {s.b, s.t, s.kv, s.d});
  CheckLike(op, "v", v, q, {s.b, s.t, s.kv, s.d});
  BATON_OP_CHECK(s.kv > 0 && s.h % s.kv == 0, op, ": kv heads of k ", k.DebugString(),
                 " do not divide the heads of q ", q.DebugString());
  BATON_OP_CHECK(s.d <= 256, op, ": head dim ", s.d, " > 256 is not supported on CUDA");
  return s;
}
}  // namespace

void Attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, Tensor& lse,
               Tensor* probs) {
  op_profile::Scope prof_scope("attention fwd");
  constexpr const char* kOp = "Attention";
  const cuda::AttentionDims s = CheckAttention(kOp, q, k, v);
  CheckLike(kOp, "out", out, q, q.shape());
  CheckF32(kOp, "lse", lse, {s.b, s.h, s.t});
  BATON_OP_CHECK(probs == nullptr || !probs->defined(), kOp,
                 ": probs cannot be stored on CUDA (pass null; backward recomputes them)");
  Ok(kOp, cuda::AttentionForward(Tag(q), q.raw(), k.raw(), v.raw(), s, out.raw(),
                                 static_cast<float*>(lse.raw()), cuda::CurrentStream()));
}

void AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq,
                       Tensor& dk, Tensor& dv) {
  op_profile::Scope prof_scope("attention bwd");
  constexpr const char* kOp = "AttentionBackward";
  (void)probs;  // recomputed from lse either way
  const cuda::AttentionDims s = CheckAttention(kOp, q, k, v);
  CheckLike(kOp, "dout", dout, q, q.shape());
  CheckLike(kOp, "out", out, q, q.shape());
  CheckF32(kOp, "lse", lse, {s.b, s.h, s.t});
  CheckLike(kOp, "dq", dq, q, q.shape());
  CheckLike(kOp, "dk", dk, q, k.shape());
  CheckLike(kOp, "dv", dv, q, v.shape());
  Ok(kOp, cuda::AttentionBackward(Tag(q), dout.raw(), q.raw(), k.raw(), v.raw(), out.raw(),
                                  static_cast<const float*>(lse.raw()), s, dq.raw(), dk.raw(),
                                  dv.raw(), cuda::CurrentStream()));
}

// ---- SwiGLU, embedding, cross-entropy

void SwiGlu(const Tensor& gate, const Tensor& up, Tensor& h) {
  op_profile::Scope prof_scope("swiglu fwd");
  constexpr const char* kOp = "SwiGlu";
  CheckCudaFloat(kOp, "gate", gate);
  CheckLike(kOp, "up", up, gate, gate.shape());
  CheckLike(kOp, "h", h, gate, gate.shape());
  Ok(kOp, cuda::SwiGluForward(Tag(gate), gate.raw(), up.raw(), gate.numel(), h.raw(),
                              cuda::CurrentStream()));
}

void SwiGluBackward(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate,
                    Tensor& dup) {
  op_profile::Scope prof_scope("swiglu bwd");
  constexpr const char* kOp = "SwiGluBackward";
  CheckCudaFloat(kOp, "gate", gate);
  CheckLike(kOp, "dh", dh, gate, gate.shape());
  CheckLike(kOp, "up", up, gate, gate.shape());
  CheckLike(kOp, "dgate", dgate, gate, gate.shape());
  CheckLike(kOp, "dup", dup, gate, gate.shape());
  Ok(kOp, cuda::SwiGluBackward(Tag(gate), dh.raw(), gate.raw(), up.raw(), gate.numel(),
                               dgate.raw(), dup.raw(), cuda::CurrentStream()));
}

void Embedding(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out) {
  op_profile::Scope prof_scope("embedding fwd");
  constexpr const char* kOp = "Embedding";
  CheckRank(kOp, "tokens", tokens, 1);
  CheckTokens(kOp, "tokens", tokens, tokens.dim(0));
  CheckCudaFloat(kOp, "table", table);
  CheckRank(kOp, "table", table, 2);
  const int64_t n = tokens.dim(0), c = table.dim(1);
  CheckLike(kOp, "out", out, table, {n, c});
  Ok(kOp, cuda::EmbeddingForward(Tag(table), static_cast<const int32_t*>(tokens.raw()),
                                 table.raw(), vocab_start, table.dim(0), n, c, out.raw(),
                                 cuda::CurrentStream()));
}

void EmbeddingBackward(const Tensor& dout, const Tensor& tokens, int64_t vocab_start,
                       Tensor& dtable) {
  op_profile::Scope prof_scope("embedding bwd");
  constexpr const char* kOp = "EmbeddingBackward";
  CheckRank(kOp, "tokens", tokens, 1);
  CheckTokens(kOp, "tokens", tokens, tokens.dim(0));
  CheckCudaFloat(kOp, "dout", dout);
  CheckRank(kOp, "dtable", dtable, 2);
  const int64_t n = tokens.dim(0), c = dtable.dim(1);
  CheckShape(kOp, "dout", dout, {n, c});
  CheckGrad(kOp, "dtable", dtable, dout, dtable.shape());
  Ok(kOp, cuda::EmbeddingBackward(Tag(dout), Tag(dtable), dout.raw(),
                                  static_cast<const int32_t*>(tokens.raw()), vocab_start,
                                  dtable.dim(0), n, c, dtable.raw(), cuda::CurrentStream()));
}

void SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                         Tensor* dlogits, float grad_scale) {
  op_profile::Scope prof_scope("softmax cross-entropy");
  constexpr const char* kOp = "SoftmaxCrossEntropy";
  CheckCudaFloat(kOp, "logits", logits);
  CheckRank(kOp, "logits", logits, 2);
  const int64_t n = logits.dim(0), v = logits.dim(1);
  CheckTokens(kOp, "targets", targets, n);
  CheckF32(kOp, "losses", losses, {n});
  const bool has_grad = dlogits != nullptr && dlogits->defined();
  if (has_grad) CheckLike(kOp, "dlogits", *dlogits, logits, {n, v});
  Ok(kOp, cuda::SoftmaxCrossEntropy(Tag(logits), logits.raw(),
                                    static_cast<const int32_t*>(targets.raw()), n, v,
                                    static_cast<float*>(losses.raw()),
                                    has_grad ? dlogits->raw() : nullptr, grad_scale,
                                    cuda::CurrentStream()));
}

// ---- Elementwise, reductions, AdamW

void Add(const Tensor& a, const Tensor& b, Tensor& out) {
  op_profile::Scope prof_scope("residual add");
  constexpr const char* kOp = "Add";
  CheckCudaFloat(kOp, "a", a);
  CheckLike(kOp, "b", b, a, a.shape());
  CheckLike(kOp, "out", out, a, a.shape());
  Ok(kOp, cuda::Add(Tag(a), a.raw(), b.raw(), a.numel(), out.raw(), cuda::CurrentStream()));
}

void AddInPlace(Tensor& y, const Tensor& x) {
  op_profile::Scope prof_scope("residual add");
  constexpr const char* kOp = "AddInPlace";
  CheckCudaFloat(kOp, "y", y);
  CheckLike(kOp, "x", x, y, y.shape());
  Ok(kOp, cuda::AddInPlace(Tag(y), y.raw(), x.raw(), y.numel(), cuda::CurrentStream()));
}

void Scale(Tensor& x, float s) {
  op_profile::Scope prof_scope("grad scale (clip)");
  constexpr const char* kOp = "Scale";
  CheckCudaFloat(kOp, "x", x);
  Ok(kOp, cuda::Scale(Tag(x), x.raw(), x.numel(), s, cuda::CurrentStream()));
}

double SumSquares(const Tensor& x) {
  op_profile::Scope prof_scope("grad norm (clip)");
  constexpr const char* kOp = "SumSquares";
  CheckCudaFloat(kOp, "x", x);
  absl::StatusOr<double> r = cuda::SumSquares(Tag(x), x.raw(), x.numel(), cuda::CurrentStream());
  Ok(kOp, r.status());
  return *r;
}

double Sum(const Tensor& x) {
  op_profile::Scope prof_scope("loss sum");
  constexpr const char* kOp = "Sum";
  CheckCudaFloat(kOp, "x", x);
  absl::StatusOr<double> r = cuda::Sum(Tag(x), x.raw(), x.numel(), cuda::CurrentStream());
  Ok(kOp, r.status());
  return *r;
}

void AdamW(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWParams& hp) {
  op_profile::Scope prof_scope("adamw (per tensor)");
  constexpr const char* kOp = "AdamW";
  CheckF32(kOp, "p", p, p.shape());
  CheckF32(kOp, "g", g, p.shape());
  CheckF32(kOp, "m", m, p.shape());
  CheckF32(kOp, "v", v, p.shape());
  BATON_OP_CHECK(hp.step >= 1, kOp, ": step ", hp.step, " (steps count from 1)");
  const cuda::AdamWTensor t{static_cast<float*>(p.raw()), static_cast<const float*>(g.raw()),
                            static_cast<float*>(m.raw()), static_cast<float*>(v.raw()), p.numel()};
  const cuda::AdamWHyper h{hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.step, 1.0f};
  Ok(kOp, cuda::AdamWMultiTensor(&t, 1, h, cuda::CurrentStream()));
}

void Convert(const Tensor& x, Tensor& out) {
  op_profile::Scope prof_scope("dtype convert");
  constexpr const char* kOp = "Convert";
  CheckCudaFloat(kOp, "x", x);
  CheckCudaFloat(kOp, "out", out);
  CheckShape(kOp, "out", out, x.shape());
  Ok(kOp, cuda::Convert(Tag(x), x.raw(), x.numel(), Tag(out), out.raw(), cuda::CurrentStream()));
}

}  // namespace baton::ops::cuda_impl
#endif  // BATON_HAVE_CUDA
