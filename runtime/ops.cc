// The op table, part 1: the ops with structure (GEMM and linear layers,
// RMSNorm, RoPE, attention). Each entry checks shapes, dtypes, devices and
// contiguity with a message naming the shapes, then dispatches on dtype to
// the CPU kernels in kernels/cpu. Pointwise ops, embedding, cross-entropy
// and AdamW live in ops_pointwise.cc. CUDA tensors go to the CUDA op table
// (ops_cuda.cc) before any CPU check runs.
#include "runtime/ops.h"

#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "runtime/op_checks.h"
#include "runtime/ops_cuda.h"

namespace baton::ops {

using internal::CheckFloat;
using internal::CheckLike;
using internal::CheckRank;
using internal::CheckSameDType;
using internal::CheckShape;
using internal::DispatchFloat;

// ---- GEMM

void MatMul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
            float beta) {
#ifdef BATON_HAVE_CUDA
  if (a.device() == Device::kCuda) return cuda_impl::MatMul(a, trans_a, b, trans_b, c, alpha, beta);
#endif
  constexpr const char* kOp = "MatMul";
  CheckFloat(kOp, "a", a);
  CheckRank(kOp, "a", a, 2);
  CheckFloat(kOp, "b", b);
  CheckRank(kOp, "b", b, 2);
  CheckSameDType(kOp, "b", b, a);
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  BATON_OP_CHECK(k == kb, kOp, ": inner dims differ: a ", a.DebugString(), trans_a ? "ᵀ" : "",
                 " · b ", b.DebugString(), trans_b ? "ᵀ" : "");
  CheckLike(kOp, "c", c, a, {m, n});
  DispatchFloat(kOp, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::Gemm<T>(trans_a, trans_b, m, n, k, static_cast<T>(alpha), a.data<T>(), a.dim(1),
                 b.data<T>(), b.dim(1), static_cast<T>(beta), c.data<T>(), n);
  });
}

void Linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::Linear(x, w, b, y);
#endif
  constexpr const char* kOp = "Linear";
  CheckFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  CheckFloat(kOp, "w", w);
  CheckRank(kOp, "w", w, 2);
  CheckSameDType(kOp, "w", w, x);
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  BATON_OP_CHECK(w.dim(1) == in, kOp, ": x ", x.DebugString(), " does not match w ",
                 w.DebugString(), " (out, in)");
  const bool has_bias = b != nullptr && b->defined();
  if (has_bias) CheckLike(kOp, "b", *b, x, {out});
  CheckLike(kOp, "y", y, x, {n, out});
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::Gemm<T>(false, true, n, out, in, T(1), x.data<T>(), in, w.data<T>(), in, T(0),
                 y.data<T>(), out);
    if (has_bias) cpu::AddRowBias<T>(b->data<T>(), n, out, y.data<T>());
  });
}

void LinearBackward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                    Tensor* db, bool accumulate_dx) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda)
    return cuda_impl::LinearBackward(dy, x, w, dx, dw, db, accumulate_dx);
#endif
  constexpr const char* kOp = "LinearBackward";
  CheckFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  CheckFloat(kOp, "w", w);
  CheckRank(kOp, "w", w, 2);
  CheckSameDType(kOp, "w", w, x);
  const int64_t n = x.dim(0), in = x.dim(1), out = w.dim(0);
  BATON_OP_CHECK(w.dim(1) == in, kOp, ": x ", x.DebugString(), " does not match w ",
                 w.DebugString(), " (out, in)");
  CheckLike(kOp, "dy", dy, x, {n, out});
  const bool has_dx = dx != nullptr && dx->defined();
  const bool has_dw = dw != nullptr && dw->defined();
  const bool has_db = db != nullptr && db->defined();
  if (has_dx) CheckLike(kOp, "dx", *dx, x, {n, in});
  if (has_dw) CheckLike(kOp, "dw", *dw, x, {out, in});
  if (has_db) CheckLike(kOp, "db", *db, x, {out});
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (has_dx)  // dx (n, in) = dy (n, out) · w (out, in)
      cpu::Gemm<T>(false, false, n, in, out, T(1), dy.data<T>(), out, w.data<T>(), in,
                   T(accumulate_dx ? 1 : 0), dx->data<T>(), in);
    if (has_dw)  // dw (out, in) += dyᵀ (out, n) · x (n, in)
      cpu::Gemm<T>(true, false, out, in, n, T(1), dy.data<T>(), out, x.data<T>(), in, T(1),
                   dw->data<T>(), in);
    if (has_db) cpu::AccumulateColumnSums<T>(dy.data<T>(), n, out, db->data<T>());
  });
}

// ---- RMSNorm

void RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::RmsNorm(x, w, eps, y, rstd);
#endif
  constexpr const char* kOp = "RmsNorm";
  CheckFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  const int64_t n = x.dim(0), c = x.dim(1);
  CheckLike(kOp, "w", w, x, {c});
  CheckLike(kOp, "y", y, x, {n, c});
  CheckLike(kOp, "rstd", rstd, x, {n});
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::RmsNormForward<T>(x.data<T>(), w.data<T>(), static_cast<T>(eps), n, c, y.data<T>(),
                           rstd.data<T>());
  });
}

void AddRmsNorm(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                Tensor& rstd) {
#ifdef BATON_HAVE_CUDA
  if (a.device() == Device::kCuda) return cuda_impl::AddRmsNorm(a, b, w, eps, sum, y, rstd);
#endif
  Add(a, b, sum);
  RmsNorm(sum, w, eps, y, rstd);
}

void RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                     Tensor& dx, Tensor& dw, const Tensor* dres) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::RmsNormBackward(dy, x, w, rstd, dx, dw, dres);
#endif
  constexpr const char* kOp = "RmsNormBackward";
  CheckFloat(kOp, "x", x);
  CheckRank(kOp, "x", x, 2);
  const int64_t n = x.dim(0), c = x.dim(1);
  CheckLike(kOp, "dy", dy, x, {n, c});
  CheckLike(kOp, "w", w, x, {c});
  CheckLike(kOp, "rstd", rstd, x, {n});
  CheckLike(kOp, "dx", dx, x, {n, c});
  CheckLike(kOp, "dw", dw, x, {c});
  const bool has_dres = dres != nullptr && dres->defined();
  if (has_dres) CheckLike(kOp, "dres", *dres, x, {n, c});
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::RmsNormBackward<T>(dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<T>(), n, c,
                            has_dres ? dres->data<T>() : nullptr, dx.data<T>(), dw.data<T>());
  });
}

// ---- RoPE

namespace {
void RopeImpl(const char* op, Tensor& x, const RopeParams& p, bool inverse) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::Rope(x, p, inverse);
#endif
  CheckFloat(op, "x", x);
  CheckRank(op, "x", x, 4);
  BATON_OP_CHECK(x.dim(3) % 2 == 0, op, ": head dim of x ", x.DebugString(), " is odd");
  DispatchFloat(op, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::RopeRotate<T>(x.data<T>(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), p, inverse);
  });
}
}  // namespace

void Rope(Tensor& x, const RopeParams& p) { RopeImpl("Rope", x, p, /*inverse=*/false); }
void RopeBackward(Tensor& dx, const RopeParams& p) { RopeImpl("RopeBackward", dx, p, true); }

// ---- Attention

namespace {
struct AttnDims {
  int64_t b, t, h, kv, d;
};
AttnDims CheckAttentionInputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  CheckFloat(op, "q", q);
  CheckRank(op, "q", q, 4);
  CheckFloat(op, "k", k);
  CheckRank(op, "k", k, 4);
  const AttnDims dims{q.dim(0), q.dim(1), q.dim(2), k.dim(2), q.dim(3)};
  CheckLike(op, "k", k, q, {dims.b, dims.t, dims.kv, dims.d});
  CheckLike(op, "v", v, q, {dims.b, dims.t, dims.kv, dims.d});
  BATON_OP_CHECK(dims.kv > 0 && dims.h % dims.kv == 0, op, ": kv heads of k ", k.DebugString(),
                 " do not divide the heads of q ", q.DebugString());
  return dims;
}
}  // namespace

void Attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, Tensor& lse,
               Tensor* probs) {
#ifdef BATON_HAVE_CUDA
  if (q.device() == Device::kCuda) return cuda_impl::Attention(q, k, v, out, lse, probs);
#endif
  constexpr const char* kOp = "Attention";
  const AttnDims s = CheckAttentionInputs(kOp, q, k, v);
  CheckLike(kOp, "out", out, q, q.shape());
  CheckLike(kOp, "lse", lse, q, {s.b, s.h, s.t});
  const bool has_probs = probs != nullptr && probs->defined();
  if (has_probs) CheckLike(kOp, "probs", *probs, q, {s.b, s.h, s.t, s.t});
  DispatchFloat(kOp, q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::AttentionForward<T>(q.data<T>(), k.data<T>(), v.data<T>(), s.b, s.t, s.h, s.kv, s.d,
                             out.data<T>(), lse.data<T>(),
                             has_probs ? probs->data<T>() : nullptr);
  });
}

void AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq,
                       Tensor& dk, Tensor& dv) {
#ifdef BATON_HAVE_CUDA
  if (q.device() == Device::kCuda) return cuda_impl::AttentionBackward(dout, q, k, v, out, lse, probs, dq, dk, dv);
#endif
  constexpr const char* kOp = "AttentionBackward";
  const AttnDims s = CheckAttentionInputs(kOp, q, k, v);
  CheckLike(kOp, "dout", dout, q, q.shape());
  CheckLike(kOp, "out", out, q, q.shape());
  CheckLike(kOp, "lse", lse, q, {s.b, s.h, s.t});
  const bool has_probs = probs != nullptr && probs->defined();
  if (has_probs) CheckLike(kOp, "probs", *probs, q, {s.b, s.h, s.t, s.t});
  CheckLike(kOp, "dq", dq, q, q.shape());
  CheckLike(kOp, "dk", dk, q, k.shape());
  CheckLike(kOp, "dv", dv, q, v.shape());
  DispatchFloat(kOp, q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::AttentionBackward<T>(dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(),
                              out.data<T>(), lse.data<T>(), has_probs ? probs->data<T>() : nullptr,
                              s.b, s.t, s.h, s.kv, s.d, dq.data<T>(), dk.data<T>(), dv.data<T>());
  });
}

}  // namespace baton::ops
