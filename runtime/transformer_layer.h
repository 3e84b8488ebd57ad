// One Llama/Qwen2 decoder block with an explicit forward and backward
// (llm.c style), written only in ops (runtime/ops.h) so the same code runs
// on every backend:
//   h   = x + wo · Attention(RoPE(wq·n1 + bq), RoPE(wk·n1 + bk), wv·n1 + bv),  n1 = RmsNorm(x)
//   out = h + w_down · (silu(w_gate·n2) ⊙ (w_up·n2)),                        n2 = RmsNorm(h)
// The model (runtime/model.h) owns the buffers and decides, per layer, which
// activations are kept between forward and backward (LayerMode); what is
// not kept lives in a set of buffers shared by all layers and is rebuilt by
// LayerRecompute with the very same ops, so every mode gives the same bits.
// Forward, recompute and backward return the first error of an op or a tp
// collective (op_table.h, tensor_parallel.h), which names the op or the
// collective; they stop there, so a failed layer writes nothing after it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "runtime/model_config.h"
#include "runtime/tensor.h"
#include "runtime/tensor_parallel.h"

namespace baton {

// With tensor parallelism (tp, see runtime/tensor_parallel.h) H, KV and F
// are this rank's share (heads/tp, kv_heads/tp, ffn/tp): q/k/v and
// gate/up are column-parallel, wo and w_down row-parallel and followed by
// a sum over tp. Under sequence parallelism the layer's input, output, h
// and the norms' statistics hold this rank's N/tp rows of the tokens
// (resid_rows()); ln1 and ln2 are gathered to all N rows for the GEMMs.
struct LayerDims {
  int64_t batch = 0, seq = 0;  // B, T
  int64_t dim = 0;             // C
  int64_t heads = 0;           // H (this rank's)
  int64_t kv_heads = 0;        // KV (this rank's)
  int64_t head_dim = 0;        // D
  int64_t ffn = 0;             // F (this rank's)
  RopeParams rope;             // theta and scaling: ModelConfig::rope()
  float norm_eps = 1e-5f;
  TpOps* tp = nullptr;         // null or inactive: no tensor parallelism
  int64_t rows() const { return batch * seq; }  // N = B·T
  bool sp() const { return tp != nullptr && tp->sp(); }
  int64_t resid_rows() const { return sp() ? rows() / tp->size() : rows(); }  // N_r

  static LayerDims From(const ModelConfig& c, int64_t batch, int64_t seq, TpOps* tp = nullptr);
};

// The block's parameters; one instance holds values, another their grads.
// Linear weights are (out, in) as in HF.
struct LayerWeights {
  Tensor attn_norm;      // (C)
  Tensor wq;             // (H·D, C)
  Tensor wk, wv;         // (KV·D, C)
  Tensor bq;             // (H·D), undefined without qkv_bias
  Tensor bk, bv;         // (KV·D), undefined without qkv_bias
  Tensor wo;             // (C, H·D)
  Tensor mlp_norm;       // (C)
  Tensor w_gate, w_up;   // (F, C)
  Tensor w_down;         // (C, F)
};

// What the backward reads. The layer input x is not here: the model keeps
// every layer's input (the residual stream) under every policy.
struct LayerActivations {
  Tensor ln1;    // (N, C) attn_norm(x) (gathered over tp under sequence parallelism)
  Tensor rstd1;  // (N_r)
  Tensor q;      // (B, T, H, D) after bias and RoPE
  Tensor k;      // (B, T, KV, D) after bias and RoPE
  Tensor v;      // (B, T, KV, D)
  Tensor att;    // (B, T, H, D) attention output, input of wo
  Tensor lse;    // (B, H, T) log-sum-exp per score row
  Tensor probs;  // (B, H, T, T) softmax, or undefined: AttentionBackward recomputes it
  Tensor h;      // (N_r, C) x + attention branch
  Tensor ln2;    // (N, C) mlp_norm(h) (gathered under sequence parallelism)
  Tensor rstd2;  // (N_r)
  Tensor gate;   // (N, F) w_gate · ln2
  Tensor up;     // (N, F) w_up · ln2
  Tensor swi;    // (N, F) silu(gate) ⊙ up, input of w_down
};

// Working buffers of any layer's forward and backward, reused layer to layer.
struct LayerScratch {
  Tensor proj;             // (N, C) wo or w_down output before the residual add (partial over tp)
  Tensor proj_r;           // (N_r, C) proj summed over tp (aliases proj without sequence parallelism)
  Tensor norm_r;           // (N_r, C) a norm's output before the all-gather (sequence parallelism only)
  Tensor dh_full;          // (N, C) a gathered (N_r, C) gradient (aliases dh without sequence parallelism)
  Tensor dln_r;            // (N_r, C) dln summed over tp (aliases dln without sequence parallelism)
  Tensor dh;               // (N_r, C) gradient w.r.t. h
  Tensor dln;              // (N, C) gradient w.r.t. ln1 / ln2
  Tensor datt;             // (B, T, H, D)
  Tensor dq;               // (B, T, H, D)
  Tensor dk, dv;           // (B, T, KV, D)
  Tensor dgate, dup, dswi; // (N, F)
};

// kKeepAll: every activation incl. attention probabilities where the format
// stores them (policy "none").
// kSelective: keeps q, att, h, gate, up and the statistics; rebuilds the
// norms (ln1, ln2), k and v (two of the seven projections, the smallest
// under GQA), RoPE of k and swi: ~40 % fewer activation bytes for ~1/20 of
// the layer's forward GEMM work (docs/performance.md has the measurement).
// kRecompute: keeps nothing but the layer input; the forward is re-run.
enum class LayerMode { kKeepAll, kSelective, kRecompute };

// The mode of layer l under a recompute policy (every_k: kRecompute on
// l % every_k == 0, kKeepAll elsewhere).
LayerMode LayerModeOf(const RecomputeConfig& rc, int layer);

// How a layer's buffers are made. The CPU backend uses one dtype for
// everything and stores probabilities under kKeepAll; CUDA keeps the saved
// statistics (rstd, lse) in f32 whatever the activation dtype and never
// stores probabilities (its attention backward recomputes them).
struct ActivationFormat {
  DType dtype = DType::kF32;       // activations and their gradients
  DType stat_dtype = DType::kF32;  // rstd1, rstd2, lse
  Allocator* alloc = nullptr;      // null: DefaultCpuAllocator()
  bool store_probs = true;         // kKeepAll keeps probs (B, H, T, T)

  static ActivationFormat Cpu(DType dtype) { return {dtype, dtype, nullptr, true}; }
};

// Buffers shared by all layers for what their mode does not keep: every
// field but probs (recompute never stores probabilities).
LayerActivations AllocateSharedActivations(const LayerDims& d, const ActivationFormat& f);
// Fresh buffers for the fields `mode` keeps; the others alias `shared`.
LayerActivations AllocateLayerActivations(const LayerDims& d, const ActivationFormat& f,
                                          LayerMode mode, const LayerActivations& shared);
LayerScratch AllocateLayerScratch(const LayerDims& d, const ActivationFormat& f);
// Bytes held from a layer's forward to its backward in `mode`, counting its
// input x (N, C).
int64_t KeptActivationBytes(const LayerDims& d, const ActivationFormat& f, LayerMode mode);

// The CPU forms: ActivationFormat::Cpu(dtype).
inline LayerActivations AllocateSharedActivations(const LayerDims& d, DType dtype) {
  return AllocateSharedActivations(d, ActivationFormat::Cpu(dtype));
}
inline LayerActivations AllocateLayerActivations(const LayerDims& d, DType dtype, LayerMode mode,
                                                 const LayerActivations& shared) {
  return AllocateLayerActivations(d, ActivationFormat::Cpu(dtype), mode, shared);
}
inline LayerScratch AllocateLayerScratch(const LayerDims& d, DType dtype) {
  return AllocateLayerScratch(d, ActivationFormat::Cpu(dtype));
}
inline int64_t KeptActivationBytes(const LayerDims& d, DType dtype, LayerMode mode) {
  return KeptActivationBytes(d, ActivationFormat::Cpu(dtype), mode);
}

// Fills `a` from x (N, C) and, if out is non-null, writes out (N, C).
// Attention probabilities are stored iff a.probs is defined.
absl::Status LayerForward(const LayerDims& d, const LayerWeights& w, const Tensor& x,
                          LayerActivations& a, LayerScratch& s, Tensor* out);
// Rebuilds what `mode` dropped, into `a` (which aliases the shared set).
absl::Status LayerRecompute(const LayerDims& d, const LayerWeights& w, const Tensor& x,
                            LayerActivations& a, LayerScratch& s, LayerMode mode);
// Weight gradients a split backward puts off (zero-bubble schedules: B
// computes the input gradient, W later the weight gradients): each item is
// one linear layer's dW (and db) GEMM with copies of the tensors it reads,
// which later micro-batches and layers overwrite. Run() does them in order
// and empties the list; the grads get the same bits as an unsplit backward.
struct DeferredWeightGrads {
  struct Item {
    Tensor dy, x, w, dw, db;  // db undefined without a bias
  };
  std::vector<Item> items;
  absl::Status Run();
};

// Linear backward: dx now (overwritten, or += with accumulate_dx); dw (and
// db) now, or put on `defer` if non-null.
absl::Status LinearBackwardMaybeDeferred(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx,
                                         Tensor& dw, Tensor* db, DeferredWeightGrads* defer,
                                         bool accumulate_dx = false);

// dout (N, C) → dx (N, C) (overwritten; must not alias dout); parameter
// gradients accumulate into g (the linear ones onto `defer` if non-null;
// norm weights always now).
absl::Status LayerBackward(const LayerDims& d, const LayerWeights& w, LayerWeights& g, const Tensor& x,
                           const LayerActivations& a, const Tensor& dout, Tensor& dx, LayerScratch& s,
                           DeferredWeightGrads* defer = nullptr);

}  // namespace baton
