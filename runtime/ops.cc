// The ops with structure (GEMM and linear layers, RMSNorm, RoPE,
// attention): each checks its arguments once (op_checks.h, against the
// rules of its device) and dispatches through the op table (op_table.h).
// The pointwise ops, embedding, cross-entropy, Convert and AdamW are in
// ops_pointwise.cc, the vocab-parallel cross-entropy in
// ops_vocab_parallel.cc; the kernels' entries in ops_cpu.cc and ops_cuda.cc.
#include "runtime/ops.h"

#include "runtime/op_checks.h"
#include "runtime/op_table.h"

namespace baton::ops {

using internal::Given;
using internal::OpArgs;

// ---- GEMM

absl::Status MatMul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
                    float beta) {
  const OpArgs k(OpId::kMatMul, a);
  BATON_RETURN_IF_ERROR(k.FloatRank("a", a, 2));
  BATON_RETURN_IF_ERROR(k.Like("b", b, a, b.shape()));
  BATON_RETURN_IF_ERROR(k.Rank("b", b, 2));
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), kk = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  BATON_OP_CHECK(kk == kb, k.op(), ": inner dims differ: a ", a.DebugString(), trans_a ? "ᵀ" : "", " · b ",
                 b.DebugString(), trans_b ? "ᵀ" : "");
  BATON_RETURN_IF_ERROR(k.Grad("c", c, a, {m, n}));
  BATON_RETURN_IF_ERROR(k.Disjoint("c", c, "a", a));
  BATON_RETURN_IF_ERROR(k.Disjoint("c", c, "b", b));
  return BATON_OP_DISPATCH(MatMul, k.device(), a, trans_a, b, trans_b, c, alpha, beta);
}

namespace {
// x (N, in), w (out, in): the shapes Linear and its backward share.
absl::Status CheckLinearInputs(const OpArgs& k, const Tensor& x, const Tensor& w) {
  BATON_RETURN_IF_ERROR(k.FloatRank("x", x, 2));
  BATON_RETURN_IF_ERROR(k.Like("w", w, x, w.shape()));
  BATON_RETURN_IF_ERROR(k.Rank("w", w, 2));
  BATON_OP_CHECK(w.dim(1) == x.dim(1), k.op(), ": x ", x.DebugString(), " does not match w ", w.DebugString(),
                 " (out, in)");
  return absl::OkStatus();
}
}  // namespace

absl::Status Linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  const OpArgs k(OpId::kLinear, x);
  BATON_RETURN_IF_ERROR(CheckLinearInputs(k, x, w));
  const int64_t n = x.dim(0), out = w.dim(0);
  if (Given(b)) BATON_RETURN_IF_ERROR(k.Like("b", *b, x, {out}));
  BATON_RETURN_IF_ERROR(k.Like("y", y, x, {n, out}));
  BATON_RETURN_IF_ERROR(k.Disjoint("y", y, "x", x));
  return BATON_OP_DISPATCH(Linear, k.device(), x, w, Given(b) ? b : nullptr, y);
}

absl::Status LinearBackward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                            Tensor* db, bool accumulate_dx) {
  const OpArgs k(OpId::kLinearBackward, x);
  BATON_RETURN_IF_ERROR(CheckLinearInputs(k, x, w));
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  BATON_RETURN_IF_ERROR(k.Like("dy", dy, x, {n, out}));
  if (Given(dx)) {
    BATON_RETURN_IF_ERROR(k.Like("dx", *dx, x, {n, in}));
    BATON_RETURN_IF_ERROR(k.Disjoint("dx", *dx, "dy", dy));
  }
  if (Given(dw)) BATON_RETURN_IF_ERROR(k.Grad("dw", *dw, x, {out, in}));
  if (Given(db)) BATON_RETURN_IF_ERROR(k.Grad("db", *db, x, {out}));
  return BATON_OP_DISPATCH(LinearBackward, k.device(), dy, x, w, Given(dx) ? dx : nullptr,
                           Given(dw) ? dw : nullptr, Given(db) ? db : nullptr, accumulate_dx);
}

// ---- RMSNorm

absl::Status RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd) {
  const OpArgs k(OpId::kRmsNorm, x);
  BATON_RETURN_IF_ERROR(k.FloatRank("x", x, 2));
  const int64_t n = x.dim(0), c = x.dim(1);
  BATON_RETURN_IF_ERROR(k.Like("w", w, x, {c}));
  BATON_RETURN_IF_ERROR(k.Like("y", y, x, {n, c}));
  BATON_RETURN_IF_ERROR(k.Stat("rstd", rstd, x, {n}));
  return BATON_OP_DISPATCH(RmsNorm, k.device(), x, w, eps, y, rstd);
}

absl::Status AddRmsNorm(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                        Tensor& rstd) {
  const OpArgs k(OpId::kAddRmsNorm, a);
  BATON_RETURN_IF_ERROR(k.FloatRank("a", a, 2));
  const int64_t n = a.dim(0), c = a.dim(1);
  BATON_RETURN_IF_ERROR(k.Like("b", b, a, {n, c}));
  BATON_RETURN_IF_ERROR(k.Like("w", w, a, {c}));
  BATON_RETURN_IF_ERROR(k.Like("sum", sum, a, {n, c}));
  BATON_RETURN_IF_ERROR(k.Like("y", y, a, {n, c}));
  BATON_RETURN_IF_ERROR(k.Stat("rstd", rstd, a, {n}));
  return BATON_OP_DISPATCH(AddRmsNorm, k.device(), a, b, w, eps, sum, y, rstd);
}

absl::Status RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dx,
                             Tensor& dw, const Tensor* dres) {
  const OpArgs k(OpId::kRmsNormBackward, x);
  BATON_RETURN_IF_ERROR(k.FloatRank("x", x, 2));
  const int64_t n = x.dim(0), c = x.dim(1);
  BATON_RETURN_IF_ERROR(k.Like("dy", dy, x, {n, c}));
  BATON_RETURN_IF_ERROR(k.Like("w", w, x, {c}));
  BATON_RETURN_IF_ERROR(k.Stat("rstd", rstd, x, {n}));
  BATON_RETURN_IF_ERROR(k.Like("dx", dx, x, {n, c}));
  BATON_RETURN_IF_ERROR(k.Grad("dw", dw, x, {c}));
  if (Given(dres)) BATON_RETURN_IF_ERROR(k.Like("dres", *dres, x, {n, c}));  // may alias dx
  return BATON_OP_DISPATCH(RmsNormBackward, k.device(), dy, x, w, rstd, dx, dw, Given(dres) ? dres : nullptr);
}

// ---- RoPE

namespace {
absl::Status CheckRope(const OpArgs& k, const Tensor& x) {
  BATON_RETURN_IF_ERROR(k.FloatRank("x", x, 4));
  BATON_OP_CHECK(x.dim(3) % 2 == 0, k.op(), ": head dim of x ", x.DebugString(), " is odd");
  return absl::OkStatus();
}
}  // namespace

absl::Status Rope(Tensor& x, const RopeParams& p) {
  const OpArgs k(OpId::kRope, x);
  BATON_RETURN_IF_ERROR(CheckRope(k, x));
  return BATON_OP_DISPATCH(Rope, k.device(), x, p);
}

absl::Status RopeBackward(Tensor& dx, const RopeParams& p) {
  const OpArgs k(OpId::kRopeBackward, dx);
  BATON_RETURN_IF_ERROR(CheckRope(k, dx));
  return BATON_OP_DISPATCH(RopeBackward, k.device(), dx, p);
}

// ---- Attention

namespace {
// q (B, T, H, D); k, v (B, T, KV, D); H % KV == 0.
absl::Status CheckAttentionInputs(const OpArgs& k, const Tensor& q, const Tensor& kt, const Tensor& v) {
  BATON_RETURN_IF_ERROR(k.FloatRank("q", q, 4));
  BATON_RETURN_IF_ERROR(k.FloatRank("k", kt, 4));
  const int64_t b = q.dim(0), t = q.dim(1), h = q.dim(2), kv = kt.dim(2), d = q.dim(3);
  BATON_RETURN_IF_ERROR(k.Like("k", kt, q, {b, t, kv, d}));
  BATON_RETURN_IF_ERROR(k.Like("v", v, q, {b, t, kv, d}));
  BATON_OP_CHECK(kv > 0 && h % kv == 0, k.op(), ": kv heads of k ", kt.DebugString(),
                 " do not divide the heads of q ", q.DebugString());
  return absl::OkStatus();
}
}  // namespace

absl::Status Attention(const Tensor& q, const Tensor& kt, const Tensor& v, Tensor& out, Tensor& lse,
                       Tensor* probs) {
  const OpArgs k(OpId::kAttention, q);
  BATON_RETURN_IF_ERROR(CheckAttentionInputs(k, q, kt, v));
  BATON_RETURN_IF_ERROR(k.Like("out", out, q, q.shape()));
  BATON_RETURN_IF_ERROR(k.Disjoint("out", out, "q", q));
  BATON_RETURN_IF_ERROR(k.Stat("lse", lse, q, {q.dim(0), q.dim(2), q.dim(1)}));
  if (Given(probs)) {
    BATON_OP_CHECK(k.rules().stores_probs, k.op(), ": probs cannot be stored on ", DeviceName(k.device()),
                   " (pass null; the backward recomputes them)");
    BATON_RETURN_IF_ERROR(k.Like("probs", *probs, q, {q.dim(0), q.dim(2), q.dim(1), q.dim(1)}));
  }
  return BATON_OP_DISPATCH(Attention, k.device(), q, kt, v, out, lse, Given(probs) ? probs : nullptr);
}

absl::Status AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& kt, const Tensor& v,
                               const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq, Tensor& dk,
                               Tensor& dv) {
  const OpArgs k(OpId::kAttentionBackward, q);
  BATON_RETURN_IF_ERROR(CheckAttentionInputs(k, q, kt, v));
  BATON_RETURN_IF_ERROR(k.Like("dout", dout, q, q.shape()));
  BATON_RETURN_IF_ERROR(k.Like("out", out, q, q.shape()));
  BATON_RETURN_IF_ERROR(k.Stat("lse", lse, q, {q.dim(0), q.dim(2), q.dim(1)}));
  const bool has_probs = Given(probs) && k.rules().stores_probs;  // else recomputed from lse
  if (has_probs) BATON_RETURN_IF_ERROR(k.Like("probs", *probs, q, {q.dim(0), q.dim(2), q.dim(1), q.dim(1)}));
  BATON_RETURN_IF_ERROR(k.Like("dq", dq, q, q.shape()));
  BATON_RETURN_IF_ERROR(k.Like("dk", dk, q, kt.shape()));
  BATON_RETURN_IF_ERROR(k.Like("dv", dv, q, v.shape()));
  BATON_RETURN_IF_ERROR(k.Disjoint("dq", dq, "dout", dout));
  return BATON_OP_DISPATCH(AttentionBackward, k.device(), dout, q, kt, v, out, lse, has_probs ? probs : nullptr,
                           dq, dk, dv);
}

}  // namespace baton::ops
