// The model's parameters, buffers, and the whole-model forward/backward
// (see model.h). Per-block math lives in transformer_layer.cc.
#include "runtime/model.h"

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/gpu.h"
#include "runtime/ops.h"
#include "runtime/rng.h"

namespace baton {

// Activations of one (B, T), reused step to step. N = B·T.
struct Model::Buffers {
  int64_t batch = 0, seq = 0;
  LayerDims dims;
  // Forward only (Loss, PartLoss, Logits): made on first use, as views of
  // slot 0's tensors when training made one (EnsureBuffers).
  std::vector<Tensor> resid;            // L+1 × (N_r, C): resid[l] is layer l's input
  Tensor lnf;                           // (N, C) final_norm(resid[L])
  Tensor rstdf;                         // (N_r)
  Tensor logits;                        // (N, V_local)
  Tensor losses;                        // (N) per-token loss
  // Shared by every pass.
  LayerActivations shared;              // what no layer keeps; forward-only target
  LayerScratch scratch;
  Tensor dresid[2];                     // (N_r, C) residual-stream gradient, ping-pong
  Tensor tokens, targets;               // (N) i32 on the device: host batches land here
};

// One in-flight micro-batch of a part (PartForward → PartBackward). What no
// layer keeps, the scratch and the gradient ping-pong live in buffers_.
struct Model::Slot {
  int64_t batch = 0, seq = 0;
  DeferredWeightGrads deferred;         // PartBackwardInput → PartBackwardWeight
  std::vector<LayerMode> modes;         // layout of `saved`
  std::vector<Tensor> resid;            // L_here+1 × (N_r, C): resid[0] the part's input
  std::vector<LayerActivations> saved;  // per layer held here
  Tensor lnf, rstdf;                    // head: (N, C), (N_r)
  Tensor logits;                        // head: (N, V_local); dlogits after PartForward
  Tensor losses;                        // head: (N)
  double head_loss = 0;                 // head: the HeadLoss's sum, when one is set
  Tensor tokens, targets;               // (B, T) i32 on the model's device
};

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

namespace {
void FillConstant(Tensor& t, double value) {
  BATON_CHECK(t.device() == Device::kCpu && t.is_contiguous());
  if (t.dtype() == DType::kF32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(value);
  } else {
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
  }
}
}  // namespace

// ---- parameters

bool Model::is_whole() const {
  return slice_.first_layer == 0 && slice_.last_layer == config_.layers && slice_.embedding && slice_.head;
}

absl::StatusOr<Model> Model::Create(const ModelConfig& config, DType dtype, Device device,
                                    ModelSlice slice, TensorParallel tp) {
  return CreateImpl(config, dtype, device, slice, tp, /*forward_only=*/false);
}

absl::StatusOr<Model> Model::CreateForwardOnly(const ModelConfig& config, DType dtype, Device device,
                                               ModelSlice slice, TensorParallel tp) {
  return CreateImpl(config, dtype, device, slice, tp, /*forward_only=*/true);
}

absl::StatusOr<Model> Model::CreateImpl(const ModelConfig& config, DType dtype, Device device, ModelSlice slice,
                                        TensorParallel tp, bool forward_only) {
  BATON_RETURN_IF_ERROR(config.Validate());
  if (tp.size < 1 || tp.rank < 0 || tp.rank >= tp.size || (tp.size > 1 && tp.comm == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallelism: rank ", tp.rank, " of ", tp.size,
                                                   tp.comm == nullptr ? " without collectives" : ""));
  }
  for (auto [name, value] : {std::pair<const char*, int>{"model.heads", config.heads}, {"model.kv_heads", config.kv_heads},
                             {"model.ffn_dim", config.ffn_dim}, {"model.vocab_size", config.vocab_size}}) {
    if (value % tp.size != 0) {
      return absl::InvalidArgumentError(absl::StrCat("parallel.tp=", tp.size, " does not divide ", name, "=", value));
    }
  }
  if (slice.last_layer < 0) slice.last_layer = config.layers;
  if (slice.first_layer < 0 || slice.first_layer > slice.last_layer || slice.last_layer > config.layers ||
      (slice.first_layer == slice.last_layer && !slice.embedding && !slice.head)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model slice layers [", slice.first_layer, ", ", slice.last_layer, ") of model.layers=",
        config.layers, slice.embedding ? " with embedding" : "", slice.head ? " with head" : "",
        " is empty or out of range"));
  }
  if (device == Device::kCpu && dtype != DType::kF32 && dtype != DType::kF64) {
    return absl::InvalidArgumentError(
        absl::StrCat("model dtype must be f32 or f64 on the CPU backend, got ", DTypeName(dtype)));
  }
  if (device == Device::kCuda) {
#ifndef BATON_HAVE_CUDA
    return absl::FailedPreconditionError("model on cuda: this build has no CUDA backend");
#endif
    if (CudaDeviceCount() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("model on cuda: ", CudaDeviceSummary()));
    }
    if (dtype != DType::kBF16 && dtype != DType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat("model compute dtype on cuda must be bf16 or f32, got ", DTypeName(dtype)));
    }
  }
  Model m;
  m.config_ = config;
  m.slice_ = slice;
  m.tp_ = std::make_unique<TpOps>(tp);
  m.embedding_copy_ = slice.head && config.tie_embeddings && !slice.embedding;
  m.dtype_ = dtype;
  m.device_ = device;
  m.forward_only_ = forward_only;
  m.param_dtype_ = device == Device::kCpu || forward_only ? dtype : DType::kF32;
  m.format_ = ActivationFormat::Cpu(dtype);
  const int64_t C = config.dim, V = config.vocab_size, F = config.ffn_dim;
  const int64_t HD = int64_t{config.heads} * config.head_dim();
  const int64_t KVD = int64_t{config.kv_heads} * config.head_dim();
  const float std = config.init_std;
  const float out_std = static_cast<float>(config.init_std / std::sqrt(2.0 * config.layers));
  // Column-parallel (and vocab-parallel) weights split dim 0, row-parallel dim 1; norms whole.
  const int whole = -1, col = tp.size > 1 ? 0 : -1, row = tp.size > 1 ? 1 : -1;
  if (slice.embedding || m.embedding_copy_) {
    m.embed_ = m.AddParam("embed", {V, C}, col, InitKind::kNormal, std, true);
  }
  for (int l = slice.first_layer; l < slice.last_layer; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    LayerIndex li;
    li.attn_norm = m.AddParam(p + "attn_norm", {C}, whole, InitKind::kOnes, 0, false);
    li.wq = m.AddParam(p + "attn.wq", {HD, C}, col, InitKind::kNormal, std, true);
    li.wk = m.AddParam(p + "attn.wk", {KVD, C}, col, InitKind::kNormal, std, true);
    li.wv = m.AddParam(p + "attn.wv", {KVD, C}, col, InitKind::kNormal, std, true);
    if (config.qkv_bias) {
      li.bq = m.AddParam(p + "attn.bq", {HD}, col, InitKind::kZeros, 0, false);
      li.bk = m.AddParam(p + "attn.bk", {KVD}, col, InitKind::kZeros, 0, false);
      li.bv = m.AddParam(p + "attn.bv", {KVD}, col, InitKind::kZeros, 0, false);
    }
    li.wo = m.AddParam(p + "attn.wo", {C, HD}, row, InitKind::kNormal, out_std, true);
    li.mlp_norm = m.AddParam(p + "mlp_norm", {C}, whole, InitKind::kOnes, 0, false);
    li.w_gate = m.AddParam(p + "mlp.w_gate", {F, C}, col, InitKind::kNormal, std, true);
    li.w_up = m.AddParam(p + "mlp.w_up", {F, C}, col, InitKind::kNormal, std, true);
    li.w_down = m.AddParam(p + "mlp.w_down", {C, F}, row, InitKind::kNormal, out_std, true);
    m.layers_.push_back(li);
  }
  if (slice.head) {
    m.final_norm_ = m.AddParam("final_norm", {C}, whole, InitKind::kOnes, 0, false);
    if (!config.tie_embeddings) m.lm_head_ = m.AddParam("lm_head", {V, C}, col, InitKind::kNormal, std, true);
  }
  if (device == Device::kCuda) m.AllocateDeviceParams();
  return m;
}

int Model::AddParam(std::string name, const Shape& full, int shard_dim, InitKind init, float std, bool decay) {
  Param p;
  p.name = std::move(name);
  p.full_shape = full;
  Shape shape = full;
  if (shard_dim >= 0) {
    shape[shard_dim] = full[shard_dim] / tp_->size();
    p.shard_dim = shard_dim;
    p.shard_offset = shape[shard_dim] * tp_->rank();
  }
  // Sequence parallelism: a norm weight's grad covers only this rank's tokens.
  p.tp_sum_grad = tp_->sp() && shard_dim < 0;
  if (device_ == Device::kCpu) {  // CUDA: views of flat buffers, AllocateDeviceParams
    p.value = Tensor::Zeros(shape, dtype_);
    if (!forward_only_) p.grad = Tensor::Zeros(shape, dtype_);
  }
  p.decay = decay;
  params_.push_back(std::move(p));
  init_kind_.push_back(init);
  init_std_.push_back(std);
  shapes_.push_back(shape);
  return static_cast<int>(params_.size()) - 1;
}

void Model::Init(uint64_t seed) {
  BATON_CHECK_MSG(!forward_only_ || device_ == Device::kCpu, "Init of a forward-only CUDA model: load its weights");
  if (device_ == Device::kCuda) return InitOnDevice(seed);
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    switch (init_kind_[i]) {
      case InitKind::kOnes: FillConstant(p.value, 1.0); break;
      case InitKind::kZeros: p.value.Zero(); break;
      case InitKind::kNormal:
        if (p.shard_dim < 0) {
          FillNormal(p.value, seed, p.name, init_std_[i]);
        } else {  // this rank's block of the logical (R, C) tensor
          const int64_t row0 = p.shard_dim == 0 ? p.shard_offset : 0, col0 = p.shard_dim == 1 ? p.shard_offset : 0;
          FillNormal2D(p.value, seed, p.name, init_std_[i], p.full_shape[1], row0, col0);
        }
        break;
    }
  }
}

Param* Model::FindParam(std::string_view name) {
  for (Param& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

int64_t Model::NumParameters() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.value.numel();
  return n;
}

int64_t Model::ParamBytes() const {
  int64_t bytes = 0;
  if (device_ == Device::kCuda) {
    for (const Tensor* t : {&flat_values_, &flat_grads_, &flat_compute_}) bytes += t->defined() ? t->nbytes() : 0;
    return bytes;
  }
  for (const Param& p : params_) bytes += p.value.nbytes() + (p.grad.defined() ? p.grad.nbytes() : 0);
  return bytes;
}

void Model::ZeroGrad() {
  if (forward_only_) return;  // no grads to zero
  if (flat_grads_.defined()) return flat_grads_.Zero();  // one memset, padding included
  for (Param& p : params_) p.grad.Zero();
}

const Tensor& Model::ComputeWeight(int i) const {
  const Param& p = params_[i];
  return p.compute.defined() ? p.compute : p.value;
}

LayerWeights Model::Weights(int layer, bool grads) const {
  const LayerIndex& li = layers_[layer];
  auto t = [&](int idx) { return idx < 0 ? Tensor() : (grads ? params_[idx].grad : ComputeWeight(idx)); };
  LayerWeights w;
  w.attn_norm = t(li.attn_norm);
  w.wq = t(li.wq);
  w.wk = t(li.wk);
  w.wv = t(li.wv);
  w.bq = t(li.bq);
  w.bk = t(li.bk);
  w.bv = t(li.bv);
  w.wo = t(li.wo);
  w.mlp_norm = t(li.mlp_norm);
  w.w_gate = t(li.w_gate);
  w.w_up = t(li.w_up);
  w.w_down = t(li.w_down);
  return w;
}

Tensor& Model::LmHead(bool grad) {
  Param& p = params_[lm_head_ >= 0 ? lm_head_ : embed_];
  return grad ? p.grad : (p.compute.defined() ? p.compute : p.value);
}

// ---- buffers

void Model::ReleaseActivations() {
  slots_.clear();
  buffers_.reset();
}

std::vector<int64_t> Model::ActivationBytesPerLayer(const RecomputeConfig& rc, int64_t batch,
                                                    int64_t seq) const {
  const LayerDims d = LayerDims::From(config_, batch, seq, tp_.get());
  std::vector<int64_t> bytes;
  for (int l = 0; l < num_layers(); ++l) {
    bytes.push_back(KeptActivationBytes(d, format_, LayerModeOf(rc, slice_.first_layer + l)));
  }
  return bytes;
}

void Model::EnsureBuffers(int64_t batch, int64_t seq, bool forward_only) {
  Allocator* alloc = format_.alloc != nullptr ? format_.alloc : DefaultCpuAllocator();
  auto act = [&](const Shape& shape) { return Tensor::Empty(shape, dtype_, alloc); };
  if (buffers_ == nullptr || buffers_->batch != batch || buffers_->seq != seq) {
    auto b = std::make_unique<Buffers>();
    b->batch = batch;
    b->seq = seq;
    b->dims = LayerDims::From(config_, batch, seq, tp_.get());
    const int64_t Nr = b->dims.resid_rows(), C = config_.dim;
    b->shared = AllocateSharedActivations(b->dims, format_);
    b->scratch = AllocateLayerScratch(b->dims, format_);
    b->dresid[0] = act({Nr, C});
    b->dresid[1] = act({Nr, C});
    if (device_ != Device::kCpu) {
      b->tokens = Tensor::Empty({batch, seq}, DType::kI32, alloc);
      b->targets = Tensor::Empty({batch, seq}, DType::kI32, alloc);
    }
    slots_.clear();           // they alias the old shared set
    buffers_ = std::move(b);  // the old (B, T)'s buffers are freed here
  }
  Buffers& b = *buffers_;
  if (forward_only && b.resid.empty()) {
    const int64_t N = batch * seq, Nr = b.dims.resid_rows(), C = config_.dim, V = config_.vocab_size / tp_->size();
    // A training model lends slot 0's tensors: a forward-only pass runs
    // between steps, never while a micro-batch is in flight, so training
    // and validation hold one set, as when they shared buffers_.
    const Slot* lend = !slots_.empty() ? slots_[0].get() : nullptr;
    if (lend != nullptr) {
      b.resid = lend->resid;
    } else {
      for (int l = 0; l <= num_layers(); ++l) b.resid.push_back(act({Nr, C}));
    }
    const bool head_lent = lend != nullptr && slice_.head;
    b.lnf = head_lent ? lend->lnf : act({N, C});
    b.rstdf = head_lent ? lend->rstdf : Tensor::Empty({Nr}, format_.stat_dtype, alloc);
    if (slice_.head) b.logits = head_lent ? lend->logits : act({N, V});
    b.losses = head_lent ? lend->losses : Tensor::Empty({N}, format_.stat_dtype, alloc);
  }
}

// ---- forward

void Model::CheckBatch(const Tensor& tokens, const Tensor* targets) const {
  BATON_CHECK_MSG(tokens.rank() == 2 && tokens.dtype() == DType::kI32 && tokens.is_contiguous(),
                  tokens.DebugString().c_str());
  if (targets != nullptr) {
    BATON_CHECK_MSG(targets->shape() == tokens.shape() && targets->dtype() == DType::kI32 &&
                        targets->is_contiguous(),
                    targets->DebugString().c_str());
  }
}

void Model::EmbedForward(const Tensor& tokens, Tensor& resid0) {
  Buffers& b = *buffers_;
  if (!tp_->active()) {
    Keep(ops::Embedding(tokens, ComputeWeight(embed_), 0, resid0));
    return;
  }
  // Vocab-parallel: each rank fills the rows of its ids, the sum over tp has them all.
  if (!tp_->sp()) {
    if (Keep(ops::Embedding(tokens, ComputeWeight(embed_), vocab_start(), resid0))) Keep(tp_->AllReduceSum(resid0));
    return;
  }
  if (!Keep(ops::Embedding(tokens, ComputeWeight(embed_), vocab_start(), b.scratch.proj))) return;
  Keep(tp_->ReduceScatterSum(b.scratch.proj, resid0));
}

void Model::EmbedBackward(const Tensor& dresid, const Tensor& tokens) {
  Buffers& b = *buffers_;
  const Tensor* g = &dresid;
  if (tp_->sp()) {  // after an error nothing more runs here, but the hooks still fire
    if (status_.ok()) Keep(tp_->AllGather(dresid, b.scratch.dh_full));
    g = &b.scratch.dh_full;
  }
  if (status_.ok()) Keep(ops::EmbeddingBackward(*g, tokens, tp_->active() ? vocab_start() : 0, params_[embed_].grad));
  Hook(embed_, embed_ + 1);
}

void Model::HookLayer(int l) const {
  const LayerIndex& li = layers_[l];
  Hook(li.attn_norm, li.w_down + 1);  // a layer's params are added together, attn_norm first, w_down last
}

void Model::HookHead() const {
  Hook(final_norm_, static_cast<int>(params_.size()));  // final_norm [, lm_head]: the last params
  if (embedding_copy_) Hook(embed_, embed_ + 1);       // the copy's grad is complete here
}

void Model::HeadForward(const Tensor& resid, Tensor& lnf, Tensor& rstdf, Tensor& logits) {
  Buffers& b = *buffers_;
  if (tp_->sp()) {
    if (!Keep(ops::RmsNorm(resid, ComputeWeight(final_norm_), config_.norm_eps, b.scratch.norm_r, rstdf))) return;
    if (!Keep(tp_->AllGather(b.scratch.norm_r, lnf))) return;
  } else {
    if (!Keep(ops::RmsNorm(resid, ComputeWeight(final_norm_), config_.norm_eps, lnf, rstdf))) return;
  }
  Keep(ops::Linear(lnf, LmHead(false), nullptr, logits));
}

void Model::HeadCrossEntropy(Tensor& logits, const Tensor& targets, Tensor& losses, bool grad, float grad_scale) {
  if (!tp_->active()) {
    Keep(ops::SoftmaxCrossEntropy(logits, targets, losses, grad ? &logits : nullptr, grad_scale));
    return;
  }
  // Vocab-parallel: only (N) per-row numbers cross the tp group. They are
  // f32 on CUDA whatever the logits' dtype (the stat dtype), the logits'
  // dtype on the CPU.
  const int64_t n = logits.dim(0);
  Allocator* alloc = format_.alloc != nullptr ? format_.alloc : DefaultCpuAllocator();
  Tensor max = Tensor::Empty({n}, format_.stat_dtype, alloc), sum = Tensor::Empty({n}, format_.stat_dtype, alloc),
         target = Tensor::Empty({n}, format_.stat_dtype, alloc);
  if (!Keep(ops::RowMax(logits, max)) || !Keep(tp_->AllReduceMax(max))) return;
  if (!Keep(ops::RowSumExp(logits, max, sum)) || !Keep(tp_->AllReduceSum(sum))) return;
  if (!Keep(ops::PickTargets(logits, targets, vocab_start(), target)) || !Keep(tp_->AllReduceSum(target))) return;
  Keep(ops::VocabParallelCrossEntropy(logits, targets, vocab_start(), max, sum, target, losses,
                                      grad ? &logits : nullptr, grad_scale));
}

void Model::HeadBackward(const Tensor& dlogits, const Tensor& lnf, const Tensor& resid, const Tensor& rstdf,
                         Tensor& dresid, DeferredWeightGrads* defer) {
  LayerScratch& s = buffers_->scratch;
  // logits = final_norm(resid) · lm_headᵀ. Tied: lm_head's grad is embed's.
  if (status_.ok()) Keep(LinearBackwardMaybeDeferred(dlogits, lnf, LmHead(false), &s.dln, LmHead(true), nullptr, defer));
  if (status_.ok()) Keep(tp_->sp() ? tp_->ReduceScatterSum(s.dln, s.dln_r) : tp_->AllReduceSum(s.dln));
  if (status_.ok()) {
    Keep(ops::RmsNormBackward(s.dln_r, resid, ComputeWeight(final_norm_), rstdf, dresid, params_[final_norm_].grad));
  }
  HookHead();
}

void Model::ForwardLayers(const Tensor& tokens) {
  Buffers& b = *buffers_;
  EmbedForward(tokens.Reshape({b.dims.rows()}), b.resid[0]);
  for (int l = 0; l < num_layers(); ++l) {
    if (!Keep(LayerForward(b.dims, Weights(l, false), b.resid[l], b.shared, b.scratch, &b.resid[l + 1]))) return;
  }
}

void Model::ForwardHead() {
  Buffers& b = *buffers_;
  HeadForward(b.resid[num_layers()], b.lnf, b.rstdf, b.logits);
}

double Model::Loss(const Tensor& tokens, const Tensor& targets) {
  BATON_CHECK_MSG(is_whole(), "Model::Loss needs the whole model; a slice uses PartLoss");
  return PartLoss(tokens, targets, nullptr, nullptr);
}

Tensor Model::Logits(const Tensor& tokens) {
  BATON_CHECK_MSG(is_whole() && !tp_->active(), "Model::Logits needs the whole model, without tensor parallelism");
  CheckBatch(tokens, nullptr);
  EnsureBuffers(tokens.dim(0), tokens.dim(1), /*forward_only=*/true);
  ForwardLayers(OnDevice(tokens, buffers_->tokens));
  ForwardHead();
  return buffers_->logits.Clone();
}

// ---- forward + backward

double Model::ForwardBackward(const Tensor& tokens, const Tensor& targets, double grad_scale,
                              const RecomputeConfig& rc) {
  BATON_CHECK_MSG(is_whole(), "Model::ForwardBackward needs the whole model; a slice uses PartForward");
  PartForwardKeepLoss(0, tokens, targets, nullptr, nullptr, grad_scale, rc);
  PartBackward(0, nullptr, nullptr);
  // Summed only now: reading it back waits for the device, and waiting before
  // the backward would leave the GPU idle while the host queues the backward.
  return SlotLoss(0);
}

// ---- pipeline parts

Model::Slot& Model::EnsureSlot(int slot, int64_t batch, int64_t seq, const std::vector<LayerMode>& modes) {
  BATON_CHECK(slot >= 0 && buffers_ != nullptr);
  if (static_cast<int>(slots_.size()) <= slot) slots_.resize(slot + 1);
  std::unique_ptr<Slot>& s = slots_[slot];
  if (s == nullptr || s->batch != batch || s->seq != seq) {
    s = std::make_unique<Slot>();
    s->batch = batch;
    s->seq = seq;
    const int64_t N = batch * seq, Nr = buffers_->dims.resid_rows(), C = config_.dim,
                  V = config_.vocab_size / tp_->size();
    Allocator* alloc = format_.alloc != nullptr ? format_.alloc : DefaultCpuAllocator();
    auto act = [&](const Shape& shape) { return Tensor::Empty(shape, dtype_, alloc); };
    for (int l = 0; l <= num_layers(); ++l) s->resid.push_back(act({Nr, C}));
    if (slice_.head) {
      s->lnf = act({N, C});
      s->rstdf = Tensor::Empty({Nr}, format_.stat_dtype, alloc);
      s->logits = act({N, V});
      s->losses = Tensor::Empty({N}, format_.stat_dtype, alloc);
    }
    s->tokens = Tensor::Empty({batch, seq}, DType::kI32, alloc);
    s->targets = Tensor::Empty({batch, seq}, DType::kI32, alloc);
  }
  if (s->modes != modes) {
    s->saved.clear();
    for (LayerMode mode : modes) {
      s->saved.push_back(AllocateLayerActivations(buffers_->dims, format_, mode, buffers_->shared));
    }
    s->modes = modes;
  }
  return *s;
}

double Model::PartForward(int slot, const Tensor& tokens, const Tensor& targets, const Tensor* input,
                          Tensor* output, double grad_scale, const RecomputeConfig& rc) {
  PartForwardKeepLoss(slot, tokens, targets, input, output, grad_scale, rc);
  return slice_.head ? SlotLoss(slot) : 0;
}

double Model::SlotLoss(int slot) {
  BATON_CHECK_MSG(slice_.head && slot >= 0 && slot < static_cast<int>(slots_.size()) && slots_[slot] != nullptr,
                  "SlotLoss of a slot without a head PartForward");
  if (head_loss_) return status_.ok() ? slots_[slot]->head_loss : 0;
  return KeptSum(slots_[slot]->losses);
}

void Model::PartForwardKeepLoss(int slot, const Tensor& tokens, const Tensor& targets, const Tensor* input,
                                Tensor* output, double grad_scale, const RecomputeConfig& rc) {
  CheckBatch(tokens, &targets);
  BATON_CHECK_MSG((input == nullptr) == slice_.embedding && (output == nullptr) == slice_.head,
                  "PartForward: input is given exactly when the slice has no embedding, output when it has no head");
  const int64_t B = tokens.dim(0), T = tokens.dim(1), N = B * T;
  std::vector<LayerMode> modes;
  for (int l = 0; l < num_layers(); ++l) modes.push_back(LayerModeOf(rc, slice_.first_layer + l));
  EnsureBuffers(B, T, /*forward_only=*/false);
  Slot& s = EnsureSlot(slot, B, T, modes);
  Buffers& h = *buffers_;
  if (slice_.embedding) {
    s.tokens.CopyFrom(tokens);
    EmbedForward(s.tokens.Reshape({N}), s.resid[0]);
  } else {
    s.resid[0].CopyFrom(*input);
  }
  for (int l = 0; l < num_layers(); ++l) {
    if (!Keep(LayerForward(h.dims, Weights(l, false), s.resid[l], s.saved[l], h.scratch, &s.resid[l + 1]))) break;
  }
  if (!slice_.head) {
    output->CopyFrom(s.resid[num_layers()]);
    return;
  }
  HeadForward(s.resid[num_layers()], s.lnf, s.rstdf, s.logits);
  s.targets.CopyFrom(targets);
  if (head_loss_) {
    s.head_loss = 0;
    if (!status_.ok()) return;
    absl::StatusOr<double> sum = head_loss_(s.logits, s.targets.Reshape({N}), grad_scale);
    if (Keep(sum.status())) s.head_loss = *sum;
    return;
  }
  // dlogits (N, V) = (softmax - onehot) · grad_scale, in place of the logits.
  HeadCrossEntropy(s.logits, s.targets.Reshape({N}), s.losses, /*grad=*/true, static_cast<float>(grad_scale));
}

void Model::PartBackward(int slot, const Tensor* grad_output, Tensor* grad_input) {
  PartBackwardImpl(slot, grad_output, grad_input, nullptr);
}

void Model::PartBackwardInput(int slot, const Tensor* grad_output, Tensor* grad_input) {
  BATON_CHECK_MSG(slot >= 0 && slot < static_cast<int>(slots_.size()) && slots_[slot] != nullptr,
                  "PartBackwardInput of a slot without PartForward");
  hooks_held_ = true;
  PartBackwardImpl(slot, grad_output, grad_input, &slots_[slot]->deferred);
  hooks_held_ = false;
}

void Model::PartBackwardWeight(int slot) {
  BATON_CHECK_MSG(slot >= 0 && slot < static_cast<int>(slots_.size()) && slots_[slot] != nullptr,
                  "PartBackwardWeight of a slot without PartForward");
  Keep(slots_[slot]->deferred.Run());
  Hook(0, static_cast<int>(params_.size()));
}

void Model::PartBackwardImpl(int slot, const Tensor* grad_output, Tensor* grad_input, DeferredWeightGrads* defer) {
  BATON_CHECK_MSG(!forward_only_, "PartBackward of a forward-only model");
  BATON_CHECK_MSG(slot >= 0 && slot < static_cast<int>(slots_.size()) && slots_[slot] != nullptr,
                  "PartBackward of a slot without PartForward");
  BATON_CHECK_MSG((grad_output == nullptr) == slice_.head && (grad_input == nullptr) == slice_.embedding,
                  "PartBackward: grad_output is given exactly when the slice has no head, grad_input when it has no embedding");
  Slot& s = *slots_[slot];
  Buffers& h = *buffers_;
  const int L = num_layers();
  if (slice_.head) {
    HeadBackward(s.logits, s.lnf, s.resid[L], s.rstdf, h.dresid[0], defer);
  } else {
    h.dresid[0].CopyFrom(*grad_output);
  }
  int cur = 0;  // dresid[cur] holds d loss / d resid[l + 1]
  for (int l = L - 1; l >= 0; --l) {
    const LayerWeights w = Weights(l, false);
    LayerWeights g = Weights(l, true);
    if (status_.ok() && Keep(LayerRecompute(h.dims, w, s.resid[l], s.saved[l], h.scratch, s.modes[l]))) {
      Keep(LayerBackward(h.dims, w, g, s.resid[l], s.saved[l], h.dresid[cur], h.dresid[1 - cur], h.scratch, defer));
    }
    HookLayer(l);
    cur = 1 - cur;
  }
  if (slice_.embedding) {
    EmbedBackward(h.dresid[cur], s.tokens.Reshape({h.dims.rows()}));
  } else {
    grad_input->CopyFrom(h.dresid[cur]);
  }
}

double Model::PartLoss(const Tensor& tokens, const Tensor& targets, const Tensor* input, Tensor* output) {
  CheckBatch(tokens, &targets);
  (void)PartLogits(tokens, input, output);
  if (!slice_.head) return 0;
  Buffers& b = *buffers_;
  HeadCrossEntropy(b.logits, OnDevice(targets, b.targets).Reshape({b.dims.rows()}), b.losses, /*grad=*/false, 1.0f);
  return KeptSum(b.losses);
}

Tensor Model::PartLogits(const Tensor& tokens, const Tensor* input, Tensor* output) {
  CheckBatch(tokens, nullptr);
  BATON_CHECK_MSG((input == nullptr) == slice_.embedding && (output == nullptr) == slice_.head,
                  "PartLoss/PartLogits: input is given exactly when the slice has no embedding, output when it has no head");
  EnsureBuffers(tokens.dim(0), tokens.dim(1), /*forward_only=*/true);
  Buffers& b = *buffers_;
  if (slice_.embedding) {
    ForwardLayers(OnDevice(tokens, b.tokens));
  } else {
    b.resid[0].CopyFrom(*input);
    for (int l = 0; l < num_layers(); ++l) {
      if (!Keep(LayerForward(b.dims, Weights(l, false), b.resid[l], b.shared, b.scratch, &b.resid[l + 1]))) break;
    }
  }
  if (!slice_.head) {
    output->CopyFrom(b.resid[num_layers()]);
    return Tensor();
  }
  ForwardHead();
  return b.logits;
}

double Model::KeptSum(const Tensor& losses) {
  if (!status_.ok()) return 0;
  absl::StatusOr<double> sum = ops::Sum(losses);
  return Keep(sum.status()) ? *sum : 0;
}

}  // namespace baton
