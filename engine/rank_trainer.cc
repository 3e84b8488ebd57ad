// This rank's share of the model and its training step (see rank_trainer.h).
#include "engine/rank_trainer.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "kernels/cpu/convert.h"
#include "parallel/tp_collectives.h"
#include "runtime/ops.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/stream.h"
#include "parallel/device_tp_collectives.h"
#include "parallel/nccl_communicator.h"
#endif

namespace baton {
namespace {

// A host tensor holding t's values (t itself when it is on the host).
Tensor OnHost(const Tensor& t) {
  if (t.device() == Device::kCpu) return t;
  Tensor h = Tensor::Empty(t.shape(), t.dtype());
  h.CopyFrom(t);
  return h;
}

// A host tensor to read into for t (t itself when it is on the host).
Tensor HostStaging(const Tensor& t) {
  return t.device() == Device::kCpu ? t : Tensor::Empty(t.shape(), t.dtype());
}

TensorShard ShardOf(std::string name, const Param& p, Tensor local) {
  TensorShard s;
  s.name = std::move(name);
  s.full_shape = p.full_shape.empty() ? p.value.shape() : p.full_shape;
  s.shard_dim = p.shard_dim;
  s.offset = p.shard_offset;
  s.local = std::move(local);
  return s;
}

bool IsEmbeddingCopy(const Model& m, const Param& p) { return m.holds_embedding_copy() && p.name == "embed"; }

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

absl::Status ReduceScalar(Communicator* comm, double* x) {
  if (comm == nullptr || comm->size() == 1) return absl::OkStatus();
  Tensor t = Tensor::Empty({1}, DType::kF64);
  t.data<double>()[0] = *x;
  BATON_RETURN_IF_ERROR(comm->AllReduceSum(t));
  *x = t.data<double>()[0];
  return absl::OkStatus();
}

}  // namespace

RankTrainer::~RankTrainer() = default;

absl::Status RankTrainer::MakeTpCollectives(TensorParallel* tp) {
  if (config_.mesh.tp == 1) return absl::OkStatus();
  if (config_.device == Device::kCpu) {
    tp_coll_ = std::make_unique<CommTpCollectives>(*comms_->tp);
    tp_collectives_ = "mpi (host tensors)";
  } else {
#ifdef BATON_HAVE_CUDA
    // NCCL on the compute stream when every tp rank has its own GPU, else
    // through host memory (ranks sharing a GPU cannot form a NCCL comm).
    BATON_ASSIGN_OR_RETURN(std::unique_ptr<DeviceTpCollectives> coll,
                           DeviceTpCollectives::Create(*comms_->tp, cuda::CurrentStream()));
    tp_collectives_ = coll->description();
    tp_coll_ = std::move(coll);
#else
    return absl::FailedPreconditionError("parallel.tp>1 on CUDA needs a CUDA build");
#endif
  }
  *tp = {config_.mesh.tp, tp_rank_, tp_coll_.get(), config_.mesh.sequence_parallel};
  return absl::OkStatus();
}

// Optimizer state: every param, or under ZeRO-1 those this dp rank owns.
void RankTrainer::MakeOptimizerState() {
  zero_ = config_.mesh.zero == 1 && dp_ > 1;
  const int chunks = static_cast<int>(models_.size());
  owned_.resize(chunks);
  owner_.resize(chunks);
  state_index_.resize(chunks);
  int k = 0;
  for (int c = 0; c < chunks; ++c) {
    std::vector<Param>& params = models_[c]->params();
    for (size_t i = 0; i < params.size(); ++i, ++k) {
      const int owner = zero_ ? k % dp_ : dp_rank_;
      owner_[c].push_back(owner);
      if (owner == dp_rank_) {
        state_index_[c].push_back(static_cast<int>(owned_[c].size()));
        owned_[c].push_back(params[i]);
      } else {
        state_index_[c].push_back(-1);
      }
    }
    if (!zero_) {  // indices into params() itself
      for (size_t i = 0; i < params.size(); ++i) state_index_[c][i] = static_cast<int>(i);
    }
    opts_.emplace_back(config_.optimizer);
  }
}

// Gradient sums over dp: buckets started from the grad-ready hooks (CPU),
// or one NCCL all-reduce of the flat grads after the backward (CUDA).
absl::Status RankTrainer::MakeGradSync() {
  if (dp_ == 1) return absl::OkStatus();
  if (config_.device == Device::kCpu) {
    std::vector<std::vector<Param>*> lists;
    for (Model* m : models_) lists.push_back(&m->params());
    const auto bucket_bytes = static_cast<int64_t>(config_.mesh.bucket_mb * (1 << 20));
    sync_ = std::make_unique<GradSync>(*comms_->dp, std::move(lists), bucket_bytes);
    for (int c = 0; c < static_cast<int>(models_.size()); ++c) {
      GradSync* sync = sync_.get();
      models_[c]->SetGradReadyHook([sync, c](int first, int end) { sync->OnGradsReady(c, first, end); });
    }
    return absl::OkStatus();
  }
#ifdef BATON_HAVE_CUDA
  BATON_ASSIGN_OR_RETURN(nccl_dp_, NcclCommunicator::Create(comms_->dp->comm(), cuda::CurrentStream(), "dp"));
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError("parallel.dp>1 on CUDA needs a CUDA build with NCCL");
#endif
}

absl::StatusOr<std::unique_ptr<RankTrainer>> RankTrainer::Create(const EngineConfig& config, MeshComms* comms,
                                                                 TraceRecorder* trace) {
  std::unique_ptr<RankTrainer> r(new RankTrainer());
  r->config_ = config;
  r->comms_ = comms;
  r->dp_ = config.mesh.dp;
  r->dp_rank_ = comms != nullptr ? comms->dp->rank() : 0;
  r->tp_rank_ = comms != nullptr ? comms->tp->rank() : 0;
  TensorParallel tp;
  BATON_RETURN_IF_ERROR(r->MakeTpCollectives(&tp));
  Communicator* pp = comms != nullptr ? comms->pp.get() : nullptr;
  if (pp == nullptr) {
    r->self_ = MakeSelfCommunicator();
    pp = r->self_.get();
  }
  const int rank = comms != nullptr ? comms->world->rank() : -1;
  BATON_ASSIGN_OR_RETURN(r->stage_, Stage::Create(config, *pp, trace, tp, rank));
  r->models_ = r->stage_->models();
  r->MakeOptimizerState();
  BATON_RETURN_IF_ERROR(r->MakeGradSync());
  return r;
}

absl::StatusOr<int64_t> RankTrainer::NumParameters() {
  double n = 0;
  for (Model* m : models_) {
    for (const Param& p : m->params()) {
      if (!IsEmbeddingCopy(*m, p)) n += static_cast<double>(Numel(p.full_shape.empty() ? p.value.shape() : p.full_shape));
    }
  }
  if (comms_ != nullptr) BATON_RETURN_IF_ERROR(ReduceScalar(comms_->pp.get(), &n));
  return static_cast<int64_t>(n);
}

absl::StatusOr<double> RankTrainer::ForwardBackward(const std::vector<Tensor>& tokens,
                                                    const std::vector<Tensor>& targets, double grad_scale) {
  for (Model* m : models_) m->ZeroGrad();
  if (sync_ != nullptr) sync_->BeginStep(static_cast<int>(tokens.size()));
  BATON_ASSIGN_OR_RETURN(double loss_sum, stage_->RunStep(tokens, targets, grad_scale));
  if (sync_ != nullptr) BATON_RETURN_IF_ERROR(sync_->Finish());
#ifdef BATON_HAVE_CUDA
  if (nccl_dp_ != nullptr) {
    for (Model* m : models_) {
      Tensor flat = m->flat_grads();  // one all-reduce per chunk, ordered on the compute stream
      BATON_RETURN_IF_ERROR(nccl_dp_->AllReduceSum(flat));
    }
  }
#endif
  BATON_RETURN_IF_ERROR(stage_->SumTiedEmbeddingGrads());
  if (config_.mesh.tp > 1) {  // sequence-parallel norms: each tp rank saw its share of the tokens
    for (Model* m : models_) {
      for (Param& p : m->params()) {
        if (p.tp_sum_grad) BATON_RETURN_IF_ERROR(tp_coll_->AllReduceSum(p.grad));  // host or device grads
      }
    }
  }
  if (dp_ > 1) BATON_RETURN_IF_ERROR(ReduceScalar(comms_->dp.get(), &loss_sum));
  if (config_.teacher.enabled) {
    distill_sums_ = stage_->last_distill_sums();
    distill_sums_.loss = loss_sum;
    if (dp_ > 1) {
      BATON_RETURN_IF_ERROR(ReduceScalar(comms_->dp.get(), &distill_sums_.kl));
      BATON_RETURN_IF_ERROR(ReduceScalar(comms_->dp.get(), &distill_sums_.ce));
    }
  }
  return loss_sum;
}

absl::StatusOr<double> RankTrainer::ClipGradNorm(float max_norm) {
  // One GPU model: the scale is applied inside AdamW's pass.
  const bool scale_in_adamw = config_.mesh.pp == 1 && config_.device == Device::kCuda;
  GradNormPlan plan;
  if (scale_in_adamw && config_.mesh.tp == 1) {
    plan.flat = &models_[0]->flat_grads();
  } else {
    // The logical gradient: a tensor replicated over tp is counted by tp
    // rank 0, the tied embedding copy not at all.
    for (Model* m : models_) {
      for (const Param& p : m->params()) {
        if (IsEmbeddingCopy(*m, p) || (p.shard_dim < 0 && tp_rank_ != 0)) continue;
        plan.counted.push_back(&p.grad);
      }
    }
    if (comms_ != nullptr) {
      plan.reduce = [this](double* sum) -> absl::Status {
        BATON_RETURN_IF_ERROR(ReduceScalar(comms_->tp.get(), sum));
        return ReduceScalar(comms_->pp.get(), sum);
      };
    }
  }
  float scale = 1.0f;
  BATON_ASSIGN_OR_RETURN(const double norm, GlobalGradNorm(plan, max_norm, &scale));
  if (scale_in_adamw) {
    grad_scale_ = scale;
  } else if (scale != 1.0f) {
    for (Model* m : models_) {
      for (Param& p : m->params()) BATON_RETURN_IF_ERROR(ops::Scale(p.grad, scale));
    }
  }
  return norm;
}

absl::Status RankTrainer::OptimizerStep(float lr) {
  for (size_t c = 0; c < models_.size(); ++c) {
    BATON_RETURN_IF_ERROR(opts_[c].Step(OptParams(static_cast<int>(c)), lr, grad_scale_));
  }
  grad_scale_ = 1.0f;
  if (!zero_) return absl::OkStatus();
  Communicator& dp = nccl_dp_ != nullptr ? *nccl_dp_ : *comms_->dp;  // device params go over NCCL
  for (size_t c = 0; c < models_.size(); ++c) {
    std::vector<Param>& params = models_[c]->params();
    for (size_t i = 0; i < params.size(); ++i) {
      BATON_RETURN_IF_ERROR(dp.Broadcast(params[i].value, owner_[c][i]));
    }
    models_[c]->RefreshComputeWeights();
  }
  return absl::OkStatus();
}

int64_t RankTrainer::optimizer_step() const { return opts_[0].step(); }

absl::StatusOr<double> RankTrainer::ValidationLoss(const Sampler& sampler) {
  if (dp_rank_ != 0) return -1.0;
  return stage_->ValidationLoss(sampler);
}

std::vector<TensorShard> RankTrainer::CheckpointShards() {
  std::vector<TensorShard> out;
  for (size_t c = 0; c < models_.size(); ++c) {
    Model& m = *models_[c];
    AdamWOptimizer& opt = opts_[c];
    // InitState resets the moments: only where none exist yet (no step ran).
    if (opt.num_states() == 0) opt.InitState(OptParams(static_cast<int>(c)));
    std::vector<Param>& params = m.params();
    for (size_t i = 0; i < params.size(); ++i) {
      const Param& p = params[i];
      if (IsEmbeddingCopy(m, p)) continue;              // stage 0 writes the table
      if (p.shard_dim < 0 && tp_rank_ != 0) continue;   // replicated over tp: tp rank 0 writes
      if (dp_rank_ == 0) out.push_back(ShardOf("params/" + p.name, p, OnHost(p.value)));
      const int j = StateIndex(static_cast<int>(c), static_cast<int>(i));
      const bool writes_moments = zero_ ? owner_[c][i] == dp_rank_ : dp_rank_ == 0;
      if (writes_moments && j >= 0) {
        out.push_back(ShardOf("adam/m/" + p.name, p, OnHost(opt.m(j))));
        out.push_back(ShardOf("adam/v/" + p.name, p, OnHost(opt.v(j))));
      }
    }
  }
  return out;
}

absl::StatusOr<LoadedCheckpoint> RankTrainer::Load(const ShardReader& read) {
  LoadedCheckpoint out;
  // Params: every rank reads its own slices (replicas read the same ones).
  std::vector<TensorShard> shards;
  std::vector<Tensor*> targets;
  for (Model* m : models_) {
    for (Param& p : m->params()) {
      shards.push_back(ShardOf("params/" + p.name, p, HostStaging(p.value)));
      targets.push_back(&p.value);
    }
  }
  BATON_RETURN_IF_ERROR(read(shards, &out.step, &out.attrs));
  for (size_t s = 0; s < shards.size(); ++s) {
    if (targets[s]->raw() != shards[s].local.raw()) targets[s]->CopyFrom(shards[s].local);
  }
  for (Model* m : models_) m->RefreshComputeWeights();  // the bf16 copies the GPU computes with
  auto opt_step = out.attrs.find("optimizer_step");
  out.weights_only = !out.attrs.contains("sampler") || opt_step == out.attrs.end();
  if (out.weights_only) {
    out.step = 0;
    return out;
  }
  // Moments: the owner of each param reads them.
  shards.clear();
  targets.clear();
  for (size_t c = 0; c < models_.size(); ++c) {
    AdamWOptimizer& opt = opts_[c];
    opt.InitState(OptParams(static_cast<int>(c)));
    std::vector<Param>& params = models_[c]->params();
    for (size_t i = 0; i < params.size(); ++i) {
      const int j = StateIndex(static_cast<int>(c), static_cast<int>(i));
      if (j < 0) continue;
      shards.push_back(ShardOf("adam/m/" + params[i].name, params[i], HostStaging(opt.m(j))));
      targets.push_back(&opt.m(j));
      shards.push_back(ShardOf("adam/v/" + params[i].name, params[i], HostStaging(opt.v(j))));
      targets.push_back(&opt.v(j));
    }
  }
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  BATON_RETURN_IF_ERROR(read(shards, &step, &attrs));
  for (size_t s = 0; s < shards.size(); ++s) {
    if (targets[s]->raw() != shards[s].local.raw()) targets[s]->CopyFrom(shards[s].local);
  }
  for (AdamWOptimizer& opt : opts_) opt.set_step(std::stoll(opt_step->second));
  return out;
}

absl::Status RankTrainer::LoadTeacher(const ShardReader& read) {
  StageTeacher* teacher = stage_->teacher();
  if (teacher == nullptr) return absl::FailedPreconditionError("LoadTeacher: this trainer has no teacher");
  std::vector<TensorShard> shards;
  std::vector<Tensor*> targets;
  for (Model* m : teacher->models()) {
    for (Param& p : m->params()) {
      // Read as f32 (what checkpoints hold), rounded to a bf16 weight on the host.
      Tensor staging =
          p.value.dtype() == DType::kBF16 ? Tensor::Empty(p.value.shape(), DType::kF32) : HostStaging(p.value);
      shards.push_back(ShardOf("params/" + p.name, p, staging));
      targets.push_back(&p.value);
    }
  }
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  BATON_RETURN_IF_ERROR(read(shards, &step, &attrs));
  for (size_t s = 0; s < shards.size(); ++s) {
    Tensor host = shards[s].local;
    if (targets[s]->dtype() == DType::kBF16 && host.dtype() == DType::kF32) {
      host = Tensor::Empty(host.shape(), DType::kBF16);
      cpu::F32ToBf16(shards[s].local.data<float>(), host.numel(), static_cast<uint16_t*>(host.raw()));
    }
    if (targets[s]->raw() != host.raw()) targets[s]->CopyFrom(host);
  }
  for (Model* m : teacher->models()) m->RefreshComputeWeights();
  return absl::OkStatus();
}

}  // namespace baton
