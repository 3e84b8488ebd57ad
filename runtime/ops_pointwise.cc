// SwiGLU, embedding, the fused cross-entropy, the elementwise ops and
// reductions, Convert and AdamW: each checks its arguments once
// (op_checks.h) and dispatches through the op table (op_table.h), like
// ops.cc. Also the table's own helpers (HasKernel, the Unimplemented and
// context statuses of the dispatch).
#include "runtime/op_checks.h"
#include "runtime/op_table.h"
#include "runtime/ops.h"

namespace baton::ops {

using internal::Given;
using internal::OpArgs;

// ---- the table's helpers

bool HasKernel(Device d, OpId id) {
  const OpKernels& k = KernelsFor(d);
  switch (id) {
#define BATON_OP_HAS_(name) \
  case OpId::k##name: return k.name != nullptr;
    BATON_OP_LIST(BATON_OP_HAS_)
#undef BATON_OP_HAS_
  }
  return false;
}

namespace internal {
absl::Status NoKernel(OpId id, Device d) {
  return absl::UnimplementedError(
      absl::StrCat(OpName(id), ": no kernel on ", DeviceName(d), " (the op is CPU-only; run it on the host)"));
}
absl::Status InOp(OpId id, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(OpName(id), ": ", s.message()));
}
}  // namespace internal

// ---- SwiGLU

absl::Status SwiGlu(const Tensor& gate, const Tensor& up, Tensor& h) {
  const OpArgs k(OpId::kSwiGlu, gate);
  BATON_RETURN_IF_ERROR(k.Float("gate", gate));
  BATON_RETURN_IF_ERROR(k.Like("up", up, gate, gate.shape()));
  BATON_RETURN_IF_ERROR(k.Like("h", h, gate, gate.shape()));
  return BATON_OP_DISPATCH(SwiGlu, k.device(), gate, up, h);
}

absl::Status SwiGluBackward(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate, Tensor& dup) {
  const OpArgs k(OpId::kSwiGluBackward, gate);
  BATON_RETURN_IF_ERROR(k.Float("gate", gate));
  BATON_RETURN_IF_ERROR(k.Like("dh", dh, gate, gate.shape()));
  BATON_RETURN_IF_ERROR(k.Like("up", up, gate, gate.shape()));
  BATON_RETURN_IF_ERROR(k.Like("dgate", dgate, gate, gate.shape()));
  BATON_RETURN_IF_ERROR(k.Like("dup", dup, gate, gate.shape()));
  return BATON_OP_DISPATCH(SwiGluBackward, k.device(), dh, gate, up, dgate, dup);
}

// ---- Embedding

absl::Status Embedding(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out) {
  const OpArgs k(OpId::kEmbedding, table);
  BATON_RETURN_IF_ERROR(k.FloatRank("table", table, 2));
  BATON_RETURN_IF_ERROR(k.Rank("tokens", tokens, 1));
  BATON_RETURN_IF_ERROR(k.Ids("tokens", tokens, tokens.dim(0)));
  BATON_RETURN_IF_ERROR(k.Like("out", out, table, {tokens.dim(0), table.dim(1)}));
  return BATON_OP_DISPATCH(Embedding, k.device(), tokens, table, vocab_start, out);
}

absl::Status EmbeddingBackward(const Tensor& dout, const Tensor& tokens, int64_t vocab_start, Tensor& dtable) {
  const OpArgs k(OpId::kEmbeddingBackward, dout);
  BATON_RETURN_IF_ERROR(k.FloatRank("dout", dout, 2));
  BATON_RETURN_IF_ERROR(k.Rank("tokens", tokens, 1));
  BATON_RETURN_IF_ERROR(k.Ids("tokens", tokens, dout.dim(0)));
  BATON_RETURN_IF_ERROR(k.Rank("dtable", dtable, 2));
  BATON_RETURN_IF_ERROR(k.Grad("dtable", dtable, dout, {dtable.dim(0), dout.dim(1)}));
  return BATON_OP_DISPATCH(EmbeddingBackward, k.device(), dout, tokens, vocab_start, dtable);
}

// ---- Cross-entropy

absl::Status SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, Tensor& losses, Tensor* dlogits,
                                 float grad_scale) {
  const OpArgs k(OpId::kSoftmaxCrossEntropy, logits);
  BATON_RETURN_IF_ERROR(k.FloatRank("logits", logits, 2));
  const int64_t n = logits.dim(0), v = logits.dim(1);
  BATON_RETURN_IF_ERROR(k.Ids("targets", targets, n));
  BATON_RETURN_IF_ERROR(k.Stat("losses", losses, logits, {n}));
  if (Given(dlogits)) BATON_RETURN_IF_ERROR(k.Like("dlogits", *dlogits, logits, {n, v}));  // may alias logits
  return BATON_OP_DISPATCH(SoftmaxCrossEntropy, k.device(), logits, targets, losses,
                           Given(dlogits) ? dlogits : nullptr, grad_scale);
}

// ---- Elementwise and reductions

absl::Status Add(const Tensor& a, const Tensor& b, Tensor& out) {
  const OpArgs k(OpId::kAdd, a);
  BATON_RETURN_IF_ERROR(k.Float("a", a));
  BATON_RETURN_IF_ERROR(k.Like("b", b, a, a.shape()));
  BATON_RETURN_IF_ERROR(k.Like("out", out, a, a.shape()));  // may alias a or b
  return BATON_OP_DISPATCH(Add, k.device(), a, b, out);
}

absl::Status AddInPlace(Tensor& y, const Tensor& x) {
  const OpArgs k(OpId::kAddInPlace, y);
  BATON_RETURN_IF_ERROR(k.Float("y", y));
  BATON_RETURN_IF_ERROR(k.Like("x", x, y, y.shape()));
  return BATON_OP_DISPATCH(AddInPlace, k.device(), y, x);
}

absl::Status Scale(Tensor& x, float s) {
  const OpArgs k(OpId::kScale, x);
  BATON_RETURN_IF_ERROR(k.Float("x", x));
  return BATON_OP_DISPATCH(Scale, k.device(), x, s);
}

absl::StatusOr<double> SumSquares(const Tensor& x) {
  const OpArgs k(OpId::kSumSquares, x);
  BATON_RETURN_IF_ERROR(k.Float("x", x));
  return BATON_OP_DISPATCH(SumSquares, k.device(), x);
}

absl::StatusOr<double> Sum(const Tensor& x) {
  const OpArgs k(OpId::kSum, x);
  BATON_RETURN_IF_ERROR(k.Float("x", x));
  return BATON_OP_DISPATCH(Sum, k.device(), x);
}

absl::Status Convert(const Tensor& x, Tensor& out) {
  const OpArgs k(OpId::kConvert, x);
  BATON_RETURN_IF_ERROR(k.Placed("x", x));
  BATON_RETURN_IF_ERROR(k.Placed("out", out));
  BATON_RETURN_IF_ERROR(k.Shaped("out", out, x.shape()));
  auto is_float = [](DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF64; };
  BATON_OP_CHECK(is_float(x.dtype()) && is_float(out.dtype()), k.op(), ": ", x.DebugString(), " -> ",
                 out.DebugString(), " (float dtypes only)");
  BATON_RETURN_IF_ERROR(k.Disjoint("out", out, "x", x));
  return BATON_OP_DISPATCH(Convert, k.device(), x, out);
}

// ---- AdamW

absl::Status AdamW(std::span<const AdamWTensors> list, const AdamWParams& hp) {
  if (list.empty()) return absl::OkStatus();
  const OpArgs k(OpId::kAdamW, *list[0].p);
  BATON_OP_CHECK(hp.step >= 1, k.op(), ": step ", hp.step, " (steps count from 1)");
  for (const AdamWTensors& t : list) {
    BATON_OP_CHECK(t.p != nullptr && t.g != nullptr && t.m != nullptr && t.v != nullptr, k.op(),
                   ": p, g, m and v are required");
    const Tensor& p = *t.p;
    BATON_RETURN_IF_ERROR(k.Float("p", p));
    BATON_OP_CHECK(p.dtype() != DType::kBF16, k.op(), ": p is ", p.DebugString(),
                   "; master weights are f32 (f64 on the CPU)");
    BATON_RETURN_IF_ERROR(k.Like("g", *t.g, p, p.shape()));
    BATON_RETURN_IF_ERROR(k.Like("m", *t.m, p, p.shape()));
    BATON_RETURN_IF_ERROR(k.Like("v", *t.v, p, p.shape()));
    if (Given(t.compute)) BATON_RETURN_IF_ERROR(k.Exactly("compute", *t.compute, DType::kBF16, p.shape()));
  }
  return BATON_OP_DISPATCH(AdamW, k.device(), list, hp);
}

}  // namespace baton::ops
