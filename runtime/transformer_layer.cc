// One decoder block's forward, recompute and backward (see transformer_layer.h).
#include "runtime/transformer_layer.h"

#include <vector>

#include "runtime/ops.h"

namespace baton {

LayerDims LayerDims::From(const ModelConfig& c, int64_t batch, int64_t seq, TpOps* tp) {
  const int n = tp != nullptr ? tp->size() : 1;
  LayerDims d;
  d.batch = batch;
  d.seq = seq;
  d.dim = c.dim;
  d.heads = c.heads / n;
  d.kv_heads = c.kv_heads / n;
  d.head_dim = c.head_dim();
  d.ffn = c.ffn_dim / n;
  d.tp = tp;
  d.rope = c.rope();
  d.norm_eps = c.norm_eps;
  return d;
}

LayerMode LayerModeOf(const RecomputeConfig& rc, int layer) {
  switch (rc.policy) {
    case RecomputePolicy::kNone: return LayerMode::kKeepAll;
    case RecomputePolicy::kFull: return LayerMode::kRecompute;
    case RecomputePolicy::kSelective: return LayerMode::kSelective;
    case RecomputePolicy::kEveryK:
      BATON_CHECK_MSG(rc.every_k >= 1, "recompute.every_k must be >= 1");
      return layer % rc.every_k == 0 ? LayerMode::kRecompute : LayerMode::kKeepAll;
  }
  BATON_CHECK_MSG(false, "unknown recompute policy");
  return LayerMode::kKeepAll;
}

// ---- buffer layout

namespace {

// Every field but probs, with its shape, whether kSelective keeps it and
// whether it is a saved statistic (stat_dtype).
struct Field {
  Tensor LayerActivations::*member;
  Shape shape;
  bool selective_keeps;
  bool stat = false;
};

std::vector<Field> Fields(const LayerDims& d) {
  const int64_t B = d.batch, T = d.seq, N = d.rows(), C = d.dim, H = d.heads, KV = d.kv_heads,
                D = d.head_dim, F = d.ffn, Nr = d.resid_rows();
  return {
      {&LayerActivations::ln1, {N, C}, false},         {&LayerActivations::rstd1, {Nr}, true, true},
      {&LayerActivations::q, {B, T, H, D}, true},      {&LayerActivations::k, {B, T, KV, D}, false},
      {&LayerActivations::v, {B, T, KV, D}, false},    {&LayerActivations::att, {B, T, H, D}, true},
      {&LayerActivations::lse, {B, H, T}, true, true}, {&LayerActivations::h, {Nr, C}, true},
      {&LayerActivations::ln2, {N, C}, false},         {&LayerActivations::rstd2, {Nr}, true, true},
      {&LayerActivations::gate, {N, F}, true},         {&LayerActivations::up, {N, F}, true},
      {&LayerActivations::swi, {N, F}, false},
  };
}

Shape ProbsShape(const LayerDims& d) { return {d.batch, d.heads, d.seq, d.seq}; }

bool Keeps(LayerMode mode, const Field& f) {
  return mode == LayerMode::kKeepAll || (mode == LayerMode::kSelective && f.selective_keeps);
}

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t x : s) n *= x;
  return n;
}

// A 2-D (rows, cols) view of a contiguous activation, for Linear.
Tensor As2D(const Tensor& t, int64_t rows) { return t.Reshape({rows, t.numel() / rows}); }

Allocator* AllocOf(const ActivationFormat& f) {
  return f.alloc != nullptr ? f.alloc : DefaultCpuAllocator();
}
Tensor Make(const ActivationFormat& f, const Field& field) {
  return Tensor::Empty(field.shape, field.stat ? f.stat_dtype : f.dtype, AllocOf(f));
}

}  // namespace

LayerActivations AllocateSharedActivations(const LayerDims& d, const ActivationFormat& f) {
  LayerActivations a;
  for (const Field& field : Fields(d)) a.*field.member = Make(f, field);
  return a;
}

LayerActivations AllocateLayerActivations(const LayerDims& d, const ActivationFormat& f,
                                          LayerMode mode, const LayerActivations& shared) {
  LayerActivations a;
  for (const Field& field : Fields(d)) {
    a.*field.member = Keeps(mode, field) ? Make(f, field) : shared.*field.member;
  }
  if (mode == LayerMode::kKeepAll && f.store_probs) {
    a.probs = Tensor::Empty(ProbsShape(d), f.dtype, AllocOf(f));
  }
  return a;
}

LayerScratch AllocateLayerScratch(const LayerDims& d, const ActivationFormat& f) {
  const int64_t B = d.batch, T = d.seq, N = d.rows(), C = d.dim, H = d.heads, KV = d.kv_heads,
                D = d.head_dim, F = d.ffn;
  Allocator* alloc = AllocOf(f);
  auto make = [&](const Shape& shape) { return Tensor::Empty(shape, f.dtype, alloc); };
  const int64_t Nr = d.resid_rows();
  LayerScratch s;
  s.proj = make({N, C});
  s.dh = make({Nr, C});
  s.dln = make({N, C});
  const bool sp = d.sp();
  s.proj_r = sp ? make({Nr, C}) : s.proj;
  s.norm_r = sp ? make({Nr, C}) : Tensor();
  s.dh_full = sp ? make({N, C}) : s.dh;
  s.dln_r = sp ? make({Nr, C}) : s.dln;
  s.datt = make({B, T, H, D});
  s.dq = make({B, T, H, D});
  s.dk = make({B, T, KV, D});
  s.dv = make({B, T, KV, D});
  s.dgate = make({N, F});
  s.dup = make({N, F});
  s.dswi = make({N, F});
  return s;
}

int64_t KeptActivationBytes(const LayerDims& d, const ActivationFormat& f, LayerMode mode) {
  const int64_t elem = static_cast<int64_t>(DTypeSize(f.dtype));
  int64_t bytes = d.rows() * d.dim * elem;  // the layer input x
  for (const Field& field : Fields(d)) {
    if (Keeps(mode, field)) {
      bytes += Numel(field.shape) * static_cast<int64_t>(DTypeSize(field.stat ? f.stat_dtype : f.dtype));
    }
  }
  if (mode == LayerMode::kKeepAll && f.store_probs) bytes += Numel(ProbsShape(d)) * elem;
  return bytes;
}

// ---- forward

namespace {

// y = norm(x) on this rank's rows; under sequence parallelism into s.norm_r,
// then gathered over tp into y (all N rows).
absl::Status NormForGemm(const LayerDims& d, const Tensor& x, const Tensor& w, Tensor& y, Tensor& rstd,
                         LayerScratch& s) {
  if (!d.sp()) return ops::RmsNorm(x, w, d.norm_eps, y, rstd);
  BATON_RETURN_IF_ERROR(ops::RmsNorm(x, w, d.norm_eps, s.norm_r, rstd));
  return d.tp->AllGather(s.norm_r, y);
}

// h = x + proj (this rank's rows), then y = norm(h) as NormForGemm does.
absl::Status AddNormForGemm(const LayerDims& d, const Tensor& x, const Tensor& proj, const Tensor& w, Tensor& h,
                            Tensor& y, Tensor& rstd, LayerScratch& s) {
  if (!d.sp()) return ops::AddRmsNorm(x, proj, w, d.norm_eps, h, y, rstd);
  BATON_RETURN_IF_ERROR(ops::AddRmsNorm(x, proj, w, d.norm_eps, h, s.norm_r, rstd));
  return d.tp->AllGather(s.norm_r, y);
}

// A row-parallel GEMM's partial (N, C) output summed over tp: in place, or
// reduce-scattered to this rank's rows (s.proj_r) under sequence parallelism.
absl::Status SumRowParallel(const LayerDims& d, LayerScratch& s) {
  if (d.tp == nullptr || !d.tp->active()) return absl::OkStatus();
  if (d.sp()) return d.tp->ReduceScatterSum(s.proj, s.proj_r);
  return d.tp->AllReduceSum(s.proj);
}

// The same for a column-parallel GEMM's input gradient: s.dln → s.dln_r.
absl::Status SumColumnParallelGrad(const LayerDims& d, LayerScratch& s) {
  if (d.tp == nullptr || !d.tp->active()) return absl::OkStatus();
  if (d.sp()) return d.tp->ReduceScatterSum(s.dln, s.dln_r);
  return d.tp->AllReduceSum(s.dln);
}

// An (N_r, C) gradient as the (N, C) one the GEMMs need.
absl::StatusOr<const Tensor*> Gathered(const LayerDims& d, const Tensor& g, LayerScratch& s) {
  if (!d.sp()) return &g;
  BATON_RETURN_IF_ERROR(d.tp->AllGather(g, s.dh_full));
  return &s.dh_full;
}

const Tensor* OrNull(const Tensor& t) { return t.defined() ? &t : nullptr; }

}  // namespace

absl::Status LayerForward(const LayerDims& d, const LayerWeights& w, const Tensor& x, LayerActivations& a,
                          LayerScratch& s, Tensor* out) {
  const int64_t N = d.rows();
  // Attention branch.
  BATON_RETURN_IF_ERROR(NormForGemm(d, x, w.attn_norm, a.ln1, a.rstd1, s));
  Tensor q2 = As2D(a.q, N), k2 = As2D(a.k, N), v2 = As2D(a.v, N);  // (N, H·D), (N, KV·D)
  BATON_RETURN_IF_ERROR(ops::Linear(a.ln1, w.wq, OrNull(w.bq), q2));
  BATON_RETURN_IF_ERROR(ops::Linear(a.ln1, w.wk, OrNull(w.bk), k2));
  BATON_RETURN_IF_ERROR(ops::Linear(a.ln1, w.wv, OrNull(w.bv), v2));
  BATON_RETURN_IF_ERROR(ops::Rope(a.q, d.rope));
  BATON_RETURN_IF_ERROR(ops::Rope(a.k, d.rope));
  BATON_RETURN_IF_ERROR(ops::Attention(a.q, a.k, a.v, a.att, a.lse, a.probs.defined() ? &a.probs : nullptr));
  BATON_RETURN_IF_ERROR(ops::Linear(As2D(a.att, N), w.wo, nullptr, s.proj));
  BATON_RETURN_IF_ERROR(SumRowParallel(d, s));
  // MLP branch: h = x + attention, then its norm, in one op.
  BATON_RETURN_IF_ERROR(AddNormForGemm(d, x, s.proj_r, w.mlp_norm, a.h, a.ln2, a.rstd2, s));
  BATON_RETURN_IF_ERROR(ops::Linear(a.ln2, w.w_gate, nullptr, a.gate));
  BATON_RETURN_IF_ERROR(ops::Linear(a.ln2, w.w_up, nullptr, a.up));
  BATON_RETURN_IF_ERROR(ops::SwiGlu(a.gate, a.up, a.swi));
  if (out == nullptr) return absl::OkStatus();  // recompute: w_down's output is not needed by the backward
  BATON_RETURN_IF_ERROR(ops::Linear(a.swi, w.w_down, nullptr, s.proj));
  BATON_RETURN_IF_ERROR(SumRowParallel(d, s));
  return ops::Add(a.h, s.proj_r, *out);
}

absl::Status LayerRecompute(const LayerDims& d, const LayerWeights& w, const Tensor& x, LayerActivations& a,
                            LayerScratch& s, LayerMode mode) {
  switch (mode) {
    case LayerMode::kKeepAll: return absl::OkStatus();
    case LayerMode::kSelective: {  // the same ops as LayerForward: the same bits
      BATON_RETURN_IF_ERROR(NormForGemm(d, x, w.attn_norm, a.ln1, a.rstd1, s));
      Tensor k2 = As2D(a.k, d.rows()), v2 = As2D(a.v, d.rows());  // (N, KV·D)
      BATON_RETURN_IF_ERROR(ops::Linear(a.ln1, w.wk, OrNull(w.bk), k2));
      BATON_RETURN_IF_ERROR(ops::Linear(a.ln1, w.wv, OrNull(w.bv), v2));
      BATON_RETURN_IF_ERROR(ops::Rope(a.k, d.rope));
      BATON_RETURN_IF_ERROR(NormForGemm(d, a.h, w.mlp_norm, a.ln2, a.rstd2, s));
      return ops::SwiGlu(a.gate, a.up, a.swi);
    }
    case LayerMode::kRecompute: return LayerForward(d, w, x, a, s, nullptr);
  }
  return absl::OkStatus();
}

// ---- backward

absl::Status DeferredWeightGrads::Run() {
  absl::Status st;
  for (Item& it : items) {
    st = ops::LinearBackward(it.dy, it.x, it.w, nullptr, &it.dw, it.db.defined() ? &it.db : nullptr);
    if (!st.ok()) break;
  }
  items.clear();  // emptied either way: a failed step is not resumed half-way
  return st;
}

absl::Status LinearBackwardMaybeDeferred(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor& dw,
                                         Tensor* db, DeferredWeightGrads* defer, bool accumulate_dx) {
  if (defer == nullptr) return ops::LinearBackward(dy, x, w, dx, &dw, db, accumulate_dx);
  if (dx != nullptr) BATON_RETURN_IF_ERROR(ops::LinearBackward(dy, x, w, dx, nullptr, nullptr, accumulate_dx));
  defer->items.push_back({dy.Clone(), x.Clone(), w, dw, db != nullptr ? *db : Tensor()});
  return absl::OkStatus();
}

absl::Status LayerBackward(const LayerDims& d, const LayerWeights& w, LayerWeights& g, const Tensor& x,
                           const LayerActivations& a, const Tensor& dout, Tensor& dx, LayerScratch& s,
                           DeferredWeightGrads* defer) {
  const int64_t N = d.rows();
  // MLP branch: out = h + w_down · swi.
  BATON_ASSIGN_OR_RETURN(const Tensor* dout_full, Gathered(d, dout, s));
  BATON_RETURN_IF_ERROR(LinearBackwardMaybeDeferred(*dout_full, a.swi, w.w_down, &s.dswi, g.w_down, nullptr, defer));
  BATON_RETURN_IF_ERROR(ops::SwiGluBackward(s.dswi, a.gate, a.up, s.dgate, s.dup));
  // The input gradients of gate and up sum in the second GEMM (beta = 1), and
  // the residual's gradient joins in the norm's backward: no separate adds.
  BATON_RETURN_IF_ERROR(LinearBackwardMaybeDeferred(s.dgate, a.ln2, w.w_gate, &s.dln, g.w_gate, nullptr, defer));
  BATON_RETURN_IF_ERROR(
      LinearBackwardMaybeDeferred(s.dup, a.ln2, w.w_up, &s.dln, g.w_up, nullptr, defer, /*accumulate_dx=*/true));
  BATON_RETURN_IF_ERROR(SumColumnParallelGrad(d, s));
  BATON_RETURN_IF_ERROR(ops::RmsNormBackward(s.dln_r, a.h, w.mlp_norm, a.rstd2, s.dh, g.mlp_norm, /*dres=*/&dout));
  // Attention branch: h = x + wo · att.
  Tensor datt2 = As2D(s.datt, N);
  BATON_ASSIGN_OR_RETURN(const Tensor* dh_full, Gathered(d, s.dh, s));
  BATON_RETURN_IF_ERROR(LinearBackwardMaybeDeferred(*dh_full, As2D(a.att, N), w.wo, &datt2, g.wo, nullptr, defer));
  BATON_RETURN_IF_ERROR(ops::AttentionBackward(s.datt, a.q, a.k, a.v, a.att, a.lse,
                                               a.probs.defined() ? &a.probs : nullptr, s.dq, s.dk, s.dv));
  BATON_RETURN_IF_ERROR(ops::RopeBackward(s.dq, d.rope));
  BATON_RETURN_IF_ERROR(ops::RopeBackward(s.dk, d.rope));
  BATON_RETURN_IF_ERROR(LinearBackwardMaybeDeferred(As2D(s.dq, N), a.ln1, w.wq, &s.dln, g.wq,
                                                    g.bq.defined() ? &g.bq : nullptr, defer));
  BATON_RETURN_IF_ERROR(LinearBackwardMaybeDeferred(As2D(s.dk, N), a.ln1, w.wk, &s.dln, g.wk,
                                                    g.bk.defined() ? &g.bk : nullptr, defer, /*accumulate_dx=*/true));
  BATON_RETURN_IF_ERROR(LinearBackwardMaybeDeferred(As2D(s.dv, N), a.ln1, w.wv, &s.dln, g.wv,
                                                    g.bv.defined() ? &g.bv : nullptr, defer, /*accumulate_dx=*/true));
  BATON_RETURN_IF_ERROR(SumColumnParallelGrad(d, s));
  return ops::RmsNormBackward(s.dln_r, x, w.attn_norm, a.rstd1, dx, g.attn_norm, /*dres=*/&s.dh);
}

}  // namespace baton
