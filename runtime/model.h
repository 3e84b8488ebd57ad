// Model: a Llama/Qwen2 decoder-only transformer (HF LlamaForCausalLM /
// Qwen2ForCausalLM semantics, so weights import 1:1) with explicit forward
// and backward, built on transformer_layer.h and the op table. Owns the
// named parameters (HF-like names and (out, in) shapes), their gradients
// and the activation buffers, which are allocated once per (B, T, recompute
// layout) and reused every step.
// Invariants: every recompute policy gives the same bits of loss and
// gradient as "none" (same ops in the same order); grads accumulate across
// ForwardBackward calls until ZeroGrad.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model_config.h"
#include "runtime/param.h"
#include "runtime/tensor.h"
#include "runtime/transformer_layer.h"

namespace baton {

class Model {
 public:
  // dtype: kF32 (training) or kF64 (gradient checks). Grads start at zero;
  // values are uninitialised until Init or a checkpoint load.
  static absl::StatusOr<Model> Create(const ModelConfig& config, DType dtype);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  // Counter-based init (runtime/rng.h), independent of any sharding:
  // weights N(0, init_std), wo and w_down N(0, init_std/sqrt(2·layers)),
  // norm weights 1, biases 0.
  void Init(uint64_t seed);

  const ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }
  // Order: embed, layers.0.* ... layers.{L-1}.*, final_norm, [lm_head].
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param* FindParam(std::string_view name);  // null if there is none
  int64_t NumParameters() const;            // elements, tied embedding once
  void ZeroGrad();

  // tokens, targets (B, T) i32; a target < 0 is ignored. Returns the SUM of
  // the per-token losses and accumulates d(grad_scale · sum)/dθ into the
  // grads (the trainer passes 1 / tokens in the global batch).
  double ForwardBackward(const Tensor& tokens, const Tensor& targets, double grad_scale,
                         const RecomputeConfig& rc);
  // Forward only; the SUM of per-token losses. Grads untouched.
  double Loss(const Tensor& tokens, const Tensor& targets);
  // Forward only; a fresh (B·T, V) tensor of logits (HF parity checks).
  Tensor Logits(const Tensor& tokens);

  // Bytes each layer keeps from its forward to its backward under rc,
  // counting its input (N, C) (what the trainer reports per policy).
  std::vector<int64_t> ActivationBytesPerLayer(const RecomputeConfig& rc, int64_t batch,
                                               int64_t seq) const;

 private:
  // Parameter indices of one block; -1 where absent (biases).
  struct LayerIndex {
    int attn_norm, wq, wk, wv, bq = -1, bk = -1, bv = -1, wo, mlp_norm, w_gate, w_up, w_down;
  };
  enum class InitKind { kOnes, kZeros, kNormal };
  struct Buffers;  // activations of one (B, T); model.cc

  Model() = default;
  int AddParam(std::string name, const Shape& shape, InitKind init, float std, bool decay);
  LayerWeights Weights(int layer, bool grads) const;
  Tensor& LmHead(bool grad);  // the embedding table when tied
  // Makes buffers_ fit (B, T) and, if modes is non-null, that per-layer layout.
  void EnsureBuffers(int64_t batch, int64_t seq, const std::vector<LayerMode>* modes);
  // Embedding and all layers; layer l's activations go to its saved set
  // (training) or to the shared set (forward only). Leaves resid[L].
  void ForwardLayers(const Tensor& tokens, bool training);
  // Final norm and lm head into buffers_->logits.
  void ForwardHead();
  void CheckBatch(const Tensor& tokens, const Tensor* targets) const;

  ModelConfig config_;
  DType dtype_ = DType::kF32;
  std::vector<Param> params_;
  std::vector<InitKind> init_kind_;  // per param
  std::vector<float> init_std_;      // per param, for kNormal
  int embed_ = -1, final_norm_ = -1, lm_head_ = -1;  // lm_head_ = -1 when tied
  std::vector<LayerIndex> layers_;
  std::unique_ptr<Buffers> buffers_;
};

}  // namespace baton
