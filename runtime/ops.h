// The ops: every piece of math the model and optimizer need, as functions
// on Tensors. Each op checks shapes, dtypes, devices and aliasing once, at
// its entry, against the rules of the tensors' device, then calls that
// device's kernel through the op table (runtime/op_table.h): kernels/cpu
// (f32, f64; the reference) or kernels/cuda (f32, bf16). Every op returns a
// Status: a bad argument is InvalidArgument naming the op and argument, an
// op without a kernel on the device is Unimplemented, and a CUDA, cuBLAS or
// cuDNN failure comes back with the failing call and its file:line.
//
// Conventions
// - Row-major, contiguous. Activations are 2-D (N = B·T rows, C columns)
//   unless stated. Linear weights are (out, in), as in HF: y = x·Wᵀ.
// - "dx" outputs are overwritten; parameter gradients ("dw", "db",
//   "dtable") are accumulated (+=) so micro-batches add up.
// - All reductions accumulate in at least fp32 (double for f64 tensors)
//   and are deterministic: the same inputs give the same bits whatever the
//   thread count (no cross-thread reduction order dependence).
// - CUDA (mixed precision): saved statistics (rstd, lse, the vocab-parallel
//   row statistics) and losses are f32 whatever the activations' dtype;
//   parameter gradients (MatMul's c, dw, db, dtable) may be f32 under bf16
//   activations; Attention cannot store probs (pass null). On the CPU those
//   all take the activations' dtype. Launches go to cuda::CurrentStream().
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu/rope.h"
#include "runtime/tensor.h"

namespace baton::ops {

// ---- GEMM
// c = alpha · op(a) · op(b) + beta · c, op = transpose if trans_*. 2-D only.
absl::Status MatMul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                    float alpha = 1.0f, float beta = 0.0f);

// y (N, out) = x (N, in) · w (out, in)ᵀ + b (out) [b may be null].
absl::Status Linear(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);
// dx (N, in) = dy · w  (overwritten, or += when accumulate_dx: the sum of
// several projections' input gradients without a separate add; skipped if null);
// dw (out, in) += dyᵀ · x;  db (out) += Σ_rows dy  (skipped if null).
absl::Status LinearBackward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                            Tensor* db, bool accumulate_dx = false);

// ---- RMSNorm (HF Llama: y = x · rsqrt(mean(x²) + eps) · w)
// x, y (N, C); w (C); rstd (N) saved for backward (like x on the CPU, f32 on CUDA).
absl::Status RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor& y, Tensor& rstd);
// sum = a + b, then RmsNorm(sum) into y, rstd: the residual add before a
// norm fused into one pass on the GPU (the same bits as Add then RmsNorm).
absl::Status AddRmsNorm(const Tensor& a, const Tensor& b, const Tensor& w, float eps, Tensor& sum, Tensor& y,
                        Tensor& rstd);
// dx overwritten (+ dres, a residual branch's gradient, when non-null: the
// add is fused into this pass; dres may alias dx); dw accumulated.
absl::Status RmsNormBackward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                             Tensor& dx, Tensor& dw, const Tensor* dres = nullptr);

// ---- Rotary position embedding, HF "rotate_half" layout: for head dim D,
// element i pairs with i + D/2, angle = pos · inv_freq[i], pos = t (0..T-1),
// inv_freq[i] = theta^(-2i/D) rescaled per p.scaling (none, linear, llama3;
// RopeInverseFrequency in kernels/cpu/rope.h). x (B, T, H, D) rotated in
// place. Backward rotates the gradient by -angle.
absl::Status Rope(Tensor& x, const RopeParams& p);
absl::Status RopeBackward(Tensor& dx, const RopeParams& p);
// Unscaled RoPE with base theta.
inline absl::Status Rope(Tensor& x, double theta) { return Rope(x, RopeParams{theta, {}}); }
inline absl::Status RopeBackward(Tensor& dx, double theta) { return RopeBackward(dx, RopeParams{theta, {}}); }

// ---- Causal grouped-query attention, scale 1/sqrt(D).
// q (B, T, H, D); k, v (B, T, KV, D), H % KV == 0 (head h uses kv head h/(H/KV)).
// out (B, T, H, D); lse (B, H, T) log-sum-exp of the scaled scores per row.
// probs (B, H, T, T): if non-null, the softmax probabilities are stored
// (masked entries 0). Probabilities are always computed as exp(s - lse)
// so that recomputing them from (q, k, lse) gives the same bits.
absl::Status Attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, Tensor& lse,
                       Tensor* probs);
// dq, dk, dv overwritten. If probs is null they are recomputed from q, k, lse;
// either way the result is bitwise identical.
absl::Status AttentionBackward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& out, const Tensor& lse, const Tensor* probs, Tensor& dq,
                               Tensor& dk, Tensor& dv);

// ---- SwiGLU: h = silu(gate) · up, all (N, F).
absl::Status SwiGlu(const Tensor& gate, const Tensor& up, Tensor& h);
absl::Status SwiGluBackward(const Tensor& dh, const Tensor& gate, const Tensor& up, Tensor& dgate,
                            Tensor& dup);

// ---- Embedding: out (N, C) = table[tokens - vocab_start] for tokens in
// [vocab_start, vocab_start + V_local), zeros otherwise (vocab-parallel).
// tokens (N) i32; table (V_local, C).
absl::Status Embedding(const Tensor& tokens, const Tensor& table, int64_t vocab_start, Tensor& out);
absl::Status EmbeddingBackward(const Tensor& dout, const Tensor& tokens, int64_t vocab_start,
                               Tensor& dtable);  // accumulated

// ---- Softmax cross-entropy, fused with its gradient (llm.c style).
// logits (N, V); targets (N) i32, a target < 0 is ignored (loss 0, grad 0).
// losses (N) f32/f64: -log softmax(logits)[target], stable (max-subtracted LSE).
// If dlogits is non-null: dlogits = (softmax - onehot) · grad_scale (may alias logits).
absl::Status SoftmaxCrossEntropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                                 Tensor* dlogits, float grad_scale);

// ---- Vocab-parallel softmax cross-entropy (tensor parallelism). CPU: f32/f64
// logits, statistics of their dtype; CUDA: f32/bf16 logits, f32 statistics.
// logits (N, V_local) hold vocabulary ids [vocab_start, vocab_start + V_local)
// of each row. The model reduces the per-row pieces over tp between calls:
//   max = AllReduceMax(RowMax), sum = AllReduceSum(RowSumExp(max)),
//   target = AllReduceSum(PickTargets); loss = log(sum) + max - target.
absl::Status RowMax(const Tensor& logits, Tensor& max);                       // max (N)
absl::Status RowSumExp(const Tensor& logits, const Tensor& max, Tensor& sum);  // Σ exp(x - max), (N)
// target_logit (N) = logits[row, target - vocab_start] where the target is
// in this shard, else 0.
absl::Status PickTargets(const Tensor& logits, const Tensor& targets, int64_t vocab_start, Tensor& target_logit);
// losses (N) = log(sum) + max - target_logit (0 where target < 0);
// dlogits (N, V_local) = (exp(x - max)/sum - onehot) · grad_scale, 0 on
// ignored rows (may alias logits; skipped if null).
absl::Status VocabParallelCrossEntropy(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                                       const Tensor& max, const Tensor& sum, const Tensor& target_logit,
                                       Tensor& losses, Tensor* dlogits, float grad_scale);

// ---- Elementwise and reductions
absl::Status Add(const Tensor& a, const Tensor& b, Tensor& out);  // out may alias a or b
absl::Status AddInPlace(Tensor& y, const Tensor& x);              // y += x
absl::Status Scale(Tensor& x, float s);                           // x *= s
absl::StatusOr<double> SumSquares(const Tensor& x);       // Σ x², in double (CUDA: syncs)
absl::StatusOr<double> Sum(const Tensor& x);              // Σ x, in double (CUDA: syncs)

// out = x converted to out's dtype, same shape, no overlap: f32 <-> bf16
// on both devices (round to nearest even), f32 <-> f64 on the CPU.
absl::Status Convert(const Tensor& x, Tensor& out);

// ---- AdamW (decoupled weight decay, bias correction; step counts from 1).
// p, g, m, v same shape: f32 (f64 on the CPU, in tests); g · grad_scale is
// the gradient (the clip coefficient, in the same pass; g is not written).
// p -= lr·(m̂/(sqrt(v̂)+eps) + wd·p). A non-null compute (bf16, p's shape)
// receives the updated p rounded like Convert (mixed precision's copy).
struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  float grad_scale = 1.0f;
};
struct AdamWTensors {
  Tensor* p;
  const Tensor* g;
  Tensor* m;
  Tensor* v;
  Tensor* compute = nullptr;
};
// Every tensor of the list with one set of hyper-parameters (one launch per
// chunk on CUDA); all on one device.
absl::Status AdamW(std::span<const AdamWTensors> list, const AdamWParams& hp);
inline absl::Status AdamW(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWParams& hp) {
  const AdamWTensors one{&p, &g, &m, &v};
  return AdamW(std::span<const AdamWTensors>(&one, 1), hp);
}

}  // namespace baton::ops
