// The op table, part 2: SwiGLU, embedding, fused cross-entropy, the
// elementwise ops and reductions, and AdamW. Same discipline as ops.cc:
// check at the entry (shapes named in the message), dispatch by dtype to
// kernels/cpu, CUDA tensors go to ops_cuda.cc first.
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/swiglu.h"
#include "runtime/op_checks.h"
#include "runtime/ops.h"
#include "runtime/ops_cuda.h"

namespace baton::ops {

using internal::CheckCpuContiguous;
using internal::CheckFloat;
using internal::CheckLike;
using internal::CheckRank;
using internal::DispatchFloat;

// ---- SwiGLU

void SwiGlu(const Tensor& gate, const Tensor& up, Tensor& h) {
#ifdef BATON_HAVE_CUDA
  if (gate.device() == Device::kCuda) return cuda_impl::SwiGlu(gate, up, h);
#endif
  constexpr const char* kOp = "SwiGlu";
  CheckFloat(kOp, "gate", gate);
  CheckLike(kOp, "up", up, gate, gate.shape());
  CheckLike(kOp, "h", h, gate, gate.shape());
  DispatchFloat(kOp, gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::SwiGluForward<T>(gate.data<T>(), up.data<T>(), gate.numel(), h.data<T>());
  });
}

void SwiGluBackward(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate,
                    Tensor& dup) {
#ifdef BATON_HAVE_CUDA
  if (gate.device() == Device::kCuda) return cuda_impl::SwiGluBackward(dh, gate, up, dgate, dup);
#endif
  constexpr const char* kOp = "SwiGluBackward";
  CheckFloat(kOp, "gate", gate);
  CheckLike(kOp, "dh", dh, gate, gate.shape());
  CheckLike(kOp, "up", up, gate, gate.shape());
  CheckLike(kOp, "dgate", dgate, gate, gate.shape());
  CheckLike(kOp, "dup", dup, gate, gate.shape());
  DispatchFloat(kOp, gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::SwiGluBackward<T>(dh.data<T>(), gate.data<T>(), up.data<T>(), gate.numel(),
                           dgate.data<T>(), dup.data<T>());
  });
}

// ---- Embedding

namespace {
void CheckTokens(const char* op, const Tensor& tokens) {
  CheckCpuContiguous(op, "tokens", tokens);
  CheckRank(op, "tokens", tokens, 1);
  BATON_OP_CHECK(tokens.dtype() == DType::kI32, op, ": tokens is ", tokens.DebugString(),
                 ", expected i32");
}
}  // namespace

void Embedding(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out) {
#ifdef BATON_HAVE_CUDA
  if (table.device() == Device::kCuda) return cuda_impl::Embedding(tokens, table, vocab_start, out);
#endif
  constexpr const char* kOp = "Embedding";
  CheckTokens(kOp, tokens);
  CheckFloat(kOp, "table", table);
  CheckRank(kOp, "table", table, 2);
  const int64_t n = tokens.dim(0), c = table.dim(1);
  CheckLike(kOp, "out", out, table, {n, c});
  DispatchFloat(kOp, table.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::EmbeddingForward<T>(tokens.data<int32_t>(), table.data<T>(), vocab_start, table.dim(0),
                             n, c, out.data<T>());
  });
}

void EmbeddingBackward(const Tensor& dout, const Tensor& tokens, int64_t vocab_start,
                       Tensor& dtable) {
#ifdef BATON_HAVE_CUDA
  if (dtable.device() == Device::kCuda) return cuda_impl::EmbeddingBackward(dout, tokens, vocab_start, dtable);
#endif
  constexpr const char* kOp = "EmbeddingBackward";
  CheckTokens(kOp, tokens);
  CheckFloat(kOp, "dtable", dtable);
  CheckRank(kOp, "dtable", dtable, 2);
  const int64_t n = tokens.dim(0), c = dtable.dim(1);
  CheckLike(kOp, "dout", dout, dtable, {n, c});
  DispatchFloat(kOp, dtable.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::EmbeddingBackward<T>(dout.data<T>(), tokens.data<int32_t>(), vocab_start, dtable.dim(0),
                              n, c, dtable.data<T>());
  });
}

// ---- Cross-entropy

void SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                         Tensor* dlogits, float grad_scale) {
#ifdef BATON_HAVE_CUDA
  if (logits.device() == Device::kCuda) return cuda_impl::SoftmaxCrossEntropy(logits, targets, losses, dlogits, grad_scale);
#endif
  constexpr const char* kOp = "SoftmaxCrossEntropy";
  CheckFloat(kOp, "logits", logits);
  CheckRank(kOp, "logits", logits, 2);
  const int64_t n = logits.dim(0), v = logits.dim(1);
  CheckCpuContiguous(kOp, "targets", targets);
  BATON_OP_CHECK(targets.dtype() == DType::kI32 && targets.shape() == Shape{n}, kOp,
                 ": targets is ", targets.DebugString(), ", expected i32[", n, "]");
  CheckLike(kOp, "losses", losses, logits, {n});
  const bool has_grad = dlogits != nullptr && dlogits->defined();
  if (has_grad) CheckLike(kOp, "dlogits", *dlogits, logits, {n, v});
  DispatchFloat(kOp, logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::SoftmaxCrossEntropy<T>(logits.data<T>(), targets.data<int32_t>(), n, v, losses.data<T>(),
                                has_grad ? dlogits->data<T>() : nullptr,
                                static_cast<T>(grad_scale));
  });
}

// ---- Elementwise and reductions

void Add(const Tensor& a, const Tensor& b, Tensor& out) {
#ifdef BATON_HAVE_CUDA
  if (a.device() == Device::kCuda) return cuda_impl::Add(a, b, out);
#endif
  constexpr const char* kOp = "Add";
  CheckFloat(kOp, "a", a);
  CheckLike(kOp, "b", b, a, a.shape());
  CheckLike(kOp, "out", out, a, a.shape());
  DispatchFloat(kOp, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::Add<T>(a.data<T>(), b.data<T>(), a.numel(), out.data<T>());
  });
}

void AddInPlace(Tensor& y, const Tensor& x) {
#ifdef BATON_HAVE_CUDA
  if (y.device() == Device::kCuda) return cuda_impl::AddInPlace(y, x);
#endif
  constexpr const char* kOp = "AddInPlace";
  CheckFloat(kOp, "y", y);
  CheckLike(kOp, "x", x, y, y.shape());
  DispatchFloat(kOp, y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::AddInPlace<T>(y.data<T>(), x.data<T>(), y.numel());
  });
}

void Scale(Tensor& x, float s) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::Scale(x, s);
#endif
  constexpr const char* kOp = "Scale";
  CheckFloat(kOp, "x", x);
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::Scale<T>(x.data<T>(), x.numel(), static_cast<T>(s));
  });
}

double SumSquares(const Tensor& x) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::SumSquares(x);
#endif
  constexpr const char* kOp = "SumSquares";
  CheckFloat(kOp, "x", x);
  double result = 0.0;
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    result = cpu::SumSquares<T>(x.data<T>(), x.numel());
  });
  return result;
}

double Sum(const Tensor& x) {
#ifdef BATON_HAVE_CUDA
  if (x.device() == Device::kCuda) return cuda_impl::Sum(x);
#endif
  constexpr const char* kOp = "Sum";
  CheckFloat(kOp, "x", x);
  double result = 0.0;
  DispatchFloat(kOp, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    result = cpu::Sum<T>(x.data<T>(), x.numel());
  });
  return result;
}

// ---- AdamW

void AdamW(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWParams& hp) {
#ifdef BATON_HAVE_CUDA
  if (p.device() == Device::kCuda) return cuda_impl::AdamW(p, g, m, v, hp);
#endif
  constexpr const char* kOp = "AdamW";
  CheckFloat(kOp, "p", p);
  CheckLike(kOp, "g", g, p, p.shape());
  CheckLike(kOp, "m", m, p, p.shape());
  CheckLike(kOp, "v", v, p, p.shape());
  BATON_OP_CHECK(hp.step >= 1, kOp, ": step ", hp.step, " (steps count from 1)");
  DispatchFloat(kOp, p.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::AdamWStep<T>(p.data<T>(), g.data<T>(), m.data<T>(), v.data<T>(), p.numel(), hp.lr,
                      hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.step);
  });
}

}  // namespace baton::ops
