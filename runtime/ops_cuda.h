// The CUDA half of the op table: the same contracts as runtime/ops.h for
// tensors on a CUDA device, dispatched by ops.cc and ops_pointwise.cc when
// their first tensor argument is on the GPU (only with BATON_HAVE_CUDA).
// Differences from the CPU contract, all for mixed precision:
// - element dtypes are f32 or bf16 (fp32 math inside every kernel);
// - saved statistics (rstd, lse) and losses are always f32;
// - parameter gradients (MatMul's c, dw, db, dtable) may be f32 while the
//   activations are bf16: fp32 accumulation of gradients;
// - AdamW takes f32 only (master weights, fp32 moments);
// - Attention cannot store probs (pass null); AttentionBackward recomputes
//   P from lse whether or not probs is given.
// A CUDA error inside an op aborts with the status (ops return void); the
// launches go to cuda::CurrentStream().
#pragma once

#include "runtime/ops.h"

namespace baton::ops::cuda_impl {

void MatMul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
            float beta);
void Linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);
void LinearBackward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                    Tensor* db, bool accumulate_dx);
void RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd);
void AddRmsNorm(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                Tensor& rstd);
void RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                     Tensor& dx, Tensor& dw, const Tensor* dres);
void Rope(Tensor& x, const RopeParams& p, bool inverse);
void Attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, Tensor& lse,
               Tensor* probs);
void AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq,
                       Tensor& dk, Tensor& dv);
void SwiGlu(const Tensor& gate, const Tensor& up, Tensor& h);
void SwiGluBackward(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate,
                    Tensor& dup);
void Embedding(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out);
void EmbeddingBackward(const Tensor& dout, const Tensor& tokens, int64_t vocab_start,
                       Tensor& dtable);
void SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                         Tensor* dlogits, float grad_scale);
void Add(const Tensor& a, const Tensor& b, Tensor& out);
void AddInPlace(Tensor& y, const Tensor& x);
void Scale(Tensor& x, float s);
double SumSquares(const Tensor& x);
double Sum(const Tensor& x);
void AdamW(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWParams& hp);
// out = x converted to out's dtype (f32 <-> bf16), same shape.
void Convert(const Tensor& x, Tensor& out);

}  // namespace baton::ops::cuda_impl
