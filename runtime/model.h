// Model: a Llama/Qwen2 decoder-only transformer (HF LlamaForCausalLM /
// Qwen2ForCausalLM semantics, so weights import 1:1) with explicit forward
// and backward, built on transformer_layer.h and the op table. Owns the
// named parameters (HF-like names and (out, in) shapes), their gradients
// and the activation buffers, which are allocated once per (B, T, recompute
// layout) and reused every step.
// On CUDA (mixed precision) the parameters are fp32 master weights with
// fp32 gradients, each in one flat device buffer; with bf16 compute the
// forward/backward read a bf16 copy (Param.compute) that the optimizer
// refreshes after every step; activations are bf16, saved statistics and
// losses f32.
// Pipeline parallelism cuts the model into slices (ModelSlice): a Model
// then holds only its layers (names stay global: "layers.5.attn.wq") and
// runs one micro-batch at a time through PartForward/PartBackward, keeping
// each in-flight micro-batch's activations in its own slot.
// Tensor parallelism (TensorParallel, runtime/tensor_parallel.h; CPU and CUDA):
// each Param holds its tp slice (Param::full_shape/shard_dim/shard_offset),
// q/k/v and gate/up column-parallel, wo and w_down row-parallel, the
// embedding and lm head split over the vocabulary with a vocab-parallel
// cross-entropy (no rank holds full-vocabulary logits); every tp rank
// returns the same loss. Under sequence parallelism the part interface
// (PartForward input/output, PartBackward grad_input/grad_output) carries
// this rank's (B·T/tp, C) rows, contiguous block tp_rank; otherwise all
// (B·T, C) rows, the same on every tp rank.
// Invariants: every recompute policy gives the same bits of loss and
// gradient as "none" (same ops in the same order); grads accumulate across
// ForwardBackward calls until ZeroGrad; Init gives the same master weights
// on every device, and a slice holds exactly the weights of the whole
// model's params of the same names.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model_config.h"
#include "runtime/param.h"
#include "runtime/tensor.h"
#include "runtime/tensor_parallel.h"
#include "runtime/transformer_layer.h"

namespace baton {

// Which part of the model an instance holds: layers [first_layer,
// last_layer), and whether it holds the embedding (the first part) and the
// final norm + lm head + loss (the last part). Default: the whole model.
// A head part of a tied model without the embedding holds its own copy of
// the table, named "embed" like the original (the trainer keeps the two
// copies equal by summing their grads, as Megatron does).
struct ModelSlice {
  int first_layer = 0;
  int last_layer = -1;  // exclusive; -1 = model.layers
  bool embedding = true;
  bool head = true;
};

class Model {
 public:
  // On the CPU, dtype is that of everything: kF32 (training) or kF64
  // (gradient checks). On CUDA it is the compute dtype, kBF16 (mixed
  // precision) or kF32 (parity checks); params and grads are f32 there.
  // Grads start at zero; values are zero until Init or a checkpoint load.
  // CUDA without a GPU (or a build without CUDA) is FailedPrecondition.
  // A slice that is empty or out of range is InvalidArgument, as is a tp
  // size that does not divide heads, kv_heads, ffn_dim and vocab_size.
  static absl::StatusOr<Model> Create(const ModelConfig& config, DType dtype,
                                      Device device = Device::kCpu, ModelSlice slice = {},
                                      TensorParallel tp = {});
  // A model that only runs forwards (a distillation teacher): no gradient
  // buffers, and on CUDA with bf16 compute no f32 master weights either
  // (Param.value is the weight in the compute dtype, Param.compute
  // undefined). Its weights are written into Param.value in that dtype
  // (a checkpoint load); Init on CUDA, backward and the optimizer are bugs.
  static absl::StatusOr<Model> CreateForwardOnly(const ModelConfig& config, DType dtype,
                                                 Device device = Device::kCpu, ModelSlice slice = {},
                                                 TensorParallel tp = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  // Counter-based init (runtime/rng.h), independent of any sharding:
  // weights N(0, init_std), wo and w_down N(0, init_std/sqrt(2·layers)),
  // norm weights 1, biases 0. On CUDA: drawn on the host, then copied.
  void Init(uint64_t seed);
  // Starts building, on another thread, what the first step of (batch, seq)
  // micro-batches would compile on first use (cuDNN attention plans: about a
  // second per shape); run Init meanwhile and wait on the result before the
  // first step. A no-op (ready at once) on the CPU.
  std::future<absl::Status> PrepareKernelsAsync(int64_t batch, int64_t seq) const;
  // Rewrites every Param.compute from Param.value (bf16 on CUDA); a no-op
  // where there is no copy. Call after writing values other than through
  // Init or AdamWOptimizer::Step (a checkpoint load, a test).
  void RefreshComputeWeights();

  const ModelConfig& config() const { return config_; }
  const ModelSlice& slice() const { return slice_; }  // last_layer resolved
  bool is_whole() const;
  // True on a head slice that holds its own copy of the tied embedding.
  bool holds_embedding_copy() const { return embedding_copy_; }
  DType dtype() const { return dtype_; }              // compute dtype
  DType param_dtype() const { return param_dtype_; }  // Param.value and .grad
  Device device() const { return device_; }
  bool forward_only() const { return forward_only_; }
  // Bytes of parameter state held: values, grads and compute copies.
  int64_t ParamBytes() const;
  // CUDA: every grad as one f32 vector (zero between params), for a
  // one-pass ClipGradNorm; undefined on the CPU.
  const Tensor& flat_grads() const { return flat_grads_; }
  // Order: embed, layers.0.* ... layers.{L-1}.*, final_norm, [lm_head]
  // (a slice: those it holds, in the same order).
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param* FindParam(std::string_view name);  // null if there is none
  int64_t NumParameters() const;            // elements held here, tied embedding once
  void ZeroGrad();
  const TensorParallel& tensor_parallel() const { return tp_->config(); }
  // The first error of an op or a tensor-parallel collective since the
  // model was made (ops and collectives return theirs; the forward and
  // backward here keep the first); the trainer checks it after each step.
  // After an error, the layers and collectives that follow are skipped.
  const absl::Status& comm_status() const { return status_; }

  // Called during the backward each time params [first, end) (indices into
  // params()) received one micro-batch's complete contribution: once for
  // the head's params (final_norm, lm_head; and a head slice's embedding
  // copy), once per layer (last to first), once for the embedding. Lets
  // data parallelism start summing grads while the backward runs. Null: none.
  void SetGradReadyHook(std::function<void(int first, int end)> hook) { hook_ = std::move(hook); }

  // A head loss in place of the cross-entropy of PartForward (distillation:
  // the teacher's logits come from outside the model). Called on the head
  // part with the slot's logits (N, V_local) and targets (N); it must
  // overwrite the logits with grad_scale·dloss/dlogits and return the loss
  // SUM (kept in the slot for SlotLoss). Null: the cross-entropy. PartLoss
  // (validation) always uses the cross-entropy.
  using HeadLoss = std::function<absl::StatusOr<double>(Tensor& logits, const Tensor& targets, double grad_scale)>;
  void SetHeadLoss(HeadLoss loss) { head_loss_ = std::move(loss); }

  // ForwardBackward, Loss and Logits need the whole model.
  // tokens, targets (B, T) i32 on the host or the model's device; a target
  // < 0 is ignored. On CUDA one stream sync per call (the loss). Returns the SUM of
  // the per-token losses and accumulates d(grad_scale · sum)/dθ into the
  // grads (the trainer passes 1 / tokens in the global batch). It is
  // PartForward + PartBackward on slot 0 (one backward for every caller).
  double ForwardBackward(const Tensor& tokens, const Tensor& targets, double grad_scale,
                         const RecomputeConfig& rc);
  // Forward only; the SUM of per-token losses. Grads untouched.
  double Loss(const Tensor& tokens, const Tensor& targets);
  // Forward only; a fresh (B·T, V) tensor of logits on the model's device
  // in its compute dtype (HF parity checks). Not with tensor parallelism.
  Tensor Logits(const Tensor& tokens);

  // ---- pipeline parts (any slice, the whole model included)
  // One micro-batch through this slice, its activations kept in `slot`
  // (0, 1, ...; the caller hands out slots) until PartBackward(slot).
  // tokens/targets (B, T) i32: always given (they fix B and T); tokens are
  // read on the embedding part, targets on the head part. input (B·T, C):
  // the previous part's output, null on the embedding part; output
  // (B·T, C): written for the next part, null on the head part. Returns
  // the SUM of per-token losses on the head part (0 elsewhere), where it
  // keeps d(grad_scale · sum)/dlogits for the backward.
  double PartForward(int slot, const Tensor& tokens, const Tensor& targets, const Tensor* input,
                     Tensor* output, double grad_scale, const RecomputeConfig& rc);
  // The same without reading the loss back (no device sync): the loss
  // stays in the slot until SlotLoss(slot), which the trainer calls after
  // queueing the backward, so the host never waits on the GPU mid-step.
  void PartForwardKeepLoss(int slot, const Tensor& tokens, const Tensor& targets, const Tensor* input,
                           Tensor* output, double grad_scale, const RecomputeConfig& rc);
  // SUM of per-token losses of the slot's last forward (head part only);
  // valid until the slot's next PartForward.
  double SlotLoss(int slot);
  // grad_output (B·T, C): d loss / d output, null on the head part;
  // grad_input (B·T, C) written, null on the embedding part. Parameter
  // grads accumulate. The slot is free again afterwards.
  void PartBackward(int slot, const Tensor* grad_output, Tensor* grad_input);
  // The same backward split in two (zero-bubble schedules): the input
  // gradient now, the linear layers' weight gradients (kept with copies of
  // their inputs in the slot) at PartBackwardWeight(slot), which frees the
  // slot. Norm and embedding grads are done in the first half. The grads
  // get the same bits as PartBackward's; the grad-ready hook fires once,
  // for every param, in PartBackwardWeight.
  void PartBackwardInput(int slot, const Tensor* grad_output, Tensor* grad_input);
  void PartBackwardWeight(int slot);
  // Forward only (validation), through shared buffers; same conventions.
  double PartLoss(const Tensor& tokens, const Tensor& targets, const Tensor* input, Tensor* output);
  // Forward only, without a loss (a distillation teacher): on the head part
  // the (N, V_local) logits, a view of a shared buffer valid until the next
  // forward-only call; an empty tensor elsewhere (output written).
  Tensor PartLogits(const Tensor& tokens, const Tensor* input, Tensor* output);

  // Frees every activation buffer (they come back on the next call), e.g.
  // to measure one recompute policy's memory without the previous one's.
  void ReleaseActivations();

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
  struct Slot;     // one in-flight micro-batch of a part; model.cc

  Model() = default;
  // A param of logical shape `full`, split over tp along shard_dim (-1: whole).
  int AddParam(std::string name, const Shape& full, int shard_dim, InitKind init, float std, bool decay);
  // Head: final norm of the last residual (N_r, C) into lnf (N, C), logits
  // (N, V_local); then the (vocab-parallel) cross-entropy, its gradient in
  // place of the logits if dlogits.
  void HeadForward(const Tensor& resid, Tensor& lnf, Tensor& rstdf, Tensor& logits);
  // losses (N) and, with grad, dlogits in place of the logits; the caller
  // sums the losses (a device sync) where it suits it.
  void HeadCrossEntropy(Tensor& logits, const Tensor& targets, Tensor& losses, bool grad, float grad_scale);
  // dlogits → d resid (N_r, C); accumulates lm_head and final_norm grads.
  void HeadBackward(const Tensor& dlogits, const Tensor& lnf, const Tensor& resid, const Tensor& rstdf,
                    Tensor& dresid, DeferredWeightGrads* defer = nullptr);
  void PartBackwardImpl(int slot, const Tensor* grad_output, Tensor* grad_input, DeferredWeightGrads* defer);
  void EmbedForward(const Tensor& tokens, Tensor& resid0);     // tokens (N) → (N_r, C)
  void EmbedBackward(const Tensor& dresid, const Tensor& tokens);
  void Hook(int first, int end) const {
    if (hook_ && !hooks_held_) hook_(first, end);
  }
  void HookLayer(int l) const;
  void HookHead() const;
  int64_t vocab_start() const { return int64_t{config_.vocab_size} / tp_->size() * tp_->rank(); }
  LayerWeights Weights(int layer, bool grads) const;
  Tensor& LmHead(bool grad);  // the embedding table when tied
  // Makes buffers_ fit (B, T), with the forward-only set when asked.
  void EnsureBuffers(int64_t batch, int64_t seq, bool forward_only);
  // Forward only: embedding and all layers through the shared
  // activations. Leaves resid[L].
  void ForwardLayers(const Tensor& tokens);
  // The slot, fitted to (B, T) and the layer modes; buffers_ must fit (B, T).
  Slot& EnsureSlot(int slot, int64_t batch, int64_t seq, const std::vector<LayerMode>& modes);
  int num_layers() const { return static_cast<int>(layers_.size()); }  // held here
  // Final norm and lm head into buffers_->logits.
  void ForwardHead();
  void CheckBatch(const Tensor& tokens, const Tensor* targets) const;
  // The forward/backward's view of param i: the compute copy, or the value.
  const Tensor& ComputeWeight(int i) const;
  // model_device.cc: flat value/grad/compute buffers for the params
  // declared so far (CUDA), Init through the host, and the token upload.
  void AllocateDeviceParams();
  static absl::StatusOr<Model> CreateImpl(const ModelConfig& config, DType dtype, Device device, ModelSlice slice,
                                          TensorParallel tp, bool forward_only);
  void InitOnDevice(uint64_t seed);
  Tensor OnDevice(const Tensor& t, Tensor& staging) const;
  // Keeps the first error (comm_status()); true while there is none.
  bool Keep(const absl::Status& s) {
    if (status_.ok() && !s.ok()) status_ = s;
    return status_.ok();
  }
  double KeptSum(const Tensor& losses);  // ops::Sum, 0 after an error (kept)

  ModelConfig config_;
  ModelSlice slice_;
  std::unique_ptr<TpOps> tp_;  // heap: LayerDims in the buffers point at it
  std::function<void(int, int)> hook_;
  HeadLoss head_loss_;
  bool hooks_held_ = false;  // during PartBackwardInput: the weight half reports
  bool embedding_copy_ = false;
  bool forward_only_ = false;  // CreateForwardOnly
  DType dtype_ = DType::kF32;        // compute
  DType param_dtype_ = DType::kF32;  // master weights and grads
  Device device_ = Device::kCpu;
  ActivationFormat format_;          // activation buffers
  Tensor flat_values_, flat_grads_, flat_compute_;  // CUDA: (padded total) each
  std::vector<Param> params_;
  std::vector<InitKind> init_kind_;  // per param
  std::vector<float> init_std_;      // per param, for kNormal
  std::vector<Shape> shapes_;        // per param
  int embed_ = -1, final_norm_ = -1, lm_head_ = -1;  // lm_head_ = -1 when tied
  std::vector<LayerIndex> layers_;
  std::unique_ptr<Buffers> buffers_;
  std::vector<std::unique_ptr<Slot>> slots_;  // alias buffers_->shared: cleared with it
  absl::Status status_;  // the first op or collective error (comm_status())
};

}  // namespace baton
