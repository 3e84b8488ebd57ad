// This rank's share of the model and its training step (see rank_model.h).
#include "launcher/rank_model.h"

#include <cmath>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
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

RankModel::~RankModel() = default;

absl::StatusOr<std::unique_ptr<RankModel>> RankModel::Create(const JobConfig& config, MeshComms* comms,
                                                             Device device, TraceRecorder* trace) {
  std::unique_ptr<RankModel> r(new RankModel());
  r->config_ = config;
  r->comms_ = comms;
  r->device_ = device;
  r->dp_ = config.parallel.dp;
  r->dp_rank_ = comms != nullptr ? comms->dp->rank() : 0;
  r->tp_rank_ = comms != nullptr ? comms->tp->rank() : 0;
  TensorParallel tp;
  if (config.parallel.tp > 1) {
    if (device == Device::kCpu) {
      r->tp_coll_ = std::make_unique<CommTpCollectives>(*comms->tp);
      r->tp_collectives_ = "mpi (host tensors)";
    } else {
#ifdef BATON_HAVE_CUDA
      // NCCL on the compute stream when every tp rank has its own GPU, else
      // through host memory (ranks sharing a GPU cannot form a NCCL comm).
      MpiCommunicator* mpi_tp = dynamic_cast<MpiCommunicator*>(comms->tp.get());
      BATON_CHECK_MSG(mpi_tp != nullptr, "the tp group is not an MPI communicator");
      BATON_ASSIGN_OR_RETURN(std::unique_ptr<DeviceTpCollectives> coll,
                             DeviceTpCollectives::Create(*mpi_tp, cuda::CurrentStream()));
      r->tp_collectives_ = coll->description();
      r->tp_coll_ = std::move(coll);
#else
      return absl::FailedPreconditionError("parallel.tp>1 on CUDA needs a CUDA build");
#endif
    }
    tp = {config.parallel.tp, r->tp_rank_, r->tp_coll_.get(), config.parallel.sequence_parallel};
  }
  const TrainConfig& tc = config.train;
  const DType compute = device == Device::kCuda && tc.precision == "bf16" ? DType::kBF16 : DType::kF32;
  if (config.parallel.pp == 1) {
    BATON_ASSIGN_OR_RETURN(Model m, Model::Create(config.model, compute, device, ModelSlice{}, tp));
    // Kernel plans for the micro-batch shape build while the host draws the weights.
    std::future<absl::Status> prepared = m.PrepareKernelsAsync(tc.micro_batch_size, tc.seq_len);
    m.Init(static_cast<uint64_t>(tc.seed));
    BATON_RETURN_IF_ERROR(prepared.get());
    r->whole_.emplace(std::move(m));
    r->models_ = {&*r->whole_};
  } else {
    BATON_ASSIGN_OR_RETURN(r->pipe_, PipelineStage::Create(config, *comms->pp, trace, tp, device));
    r->models_ = r->pipe_->models();
  }

  // Optimizer state: every param, or under ZeRO-1 those this dp rank owns.
  r->zero_ = config.parallel.zero == 1 && r->dp_ > 1;
  const int chunks = static_cast<int>(r->models_.size());
  r->owned_.resize(chunks);
  r->owner_.resize(chunks);
  r->state_index_.resize(chunks);
  int k = 0;
  for (int c = 0; c < chunks; ++c) {
    std::vector<Param>& params = r->models_[c]->params();
    for (size_t i = 0; i < params.size(); ++i, ++k) {
      const int owner = r->zero_ ? k % r->dp_ : r->dp_rank_;
      r->owner_[c].push_back(owner);
      if (owner == r->dp_rank_) {
        r->state_index_[c].push_back(static_cast<int>(r->owned_[c].size()));
        r->owned_[c].push_back(params[i]);
      } else {
        r->state_index_[c].push_back(-1);
      }
    }
    if (!r->zero_) {  // indices into params() itself
      for (size_t i = 0; i < params.size(); ++i) r->state_index_[c][i] = static_cast<int>(i);
    }
    r->opts_.emplace_back(tc.optimizer);
  }

  // Gradient sums over dp.
  if (r->dp_ > 1 && device == Device::kCpu) {
    std::vector<std::vector<Param>*> lists;
    for (Model* m : r->models_) lists.push_back(&m->params());
    const auto bucket_bytes = static_cast<int64_t>(config.parallel.bucket_mb * (1 << 20));
    r->sync_ = std::make_unique<GradSync>(*comms->dp, std::move(lists), bucket_bytes);
    for (int c = 0; c < chunks; ++c) {
      GradSync* sync = r->sync_.get();
      r->models_[c]->SetGradReadyHook([sync, c](int first, int end) { sync->OnGradsReady(c, first, end); });
    }
  } else if (r->dp_ > 1) {
#ifdef BATON_HAVE_CUDA
    MpiCommunicator* mpi_dp = dynamic_cast<MpiCommunicator*>(comms->dp.get());
    BATON_CHECK_MSG(mpi_dp != nullptr, "the dp group is not an MPI communicator");
    BATON_ASSIGN_OR_RETURN(r->nccl_dp_, NcclCommunicator::Create(mpi_dp->comm(), cuda::CurrentStream(), "dp"));
#else
    return absl::FailedPreconditionError("parallel.dp>1 on CUDA needs a CUDA build with NCCL");
#endif
  }
  return r;
}

absl::StatusOr<int64_t> RankModel::NumParameters() {
  double n = 0;
  for (Model* m : models_) {
    for (const Param& p : m->params()) {
      if (!IsEmbeddingCopy(*m, p)) n += static_cast<double>(Numel(p.full_shape.empty() ? p.value.shape() : p.full_shape));
    }
  }
  if (pipe_ != nullptr) BATON_RETURN_IF_ERROR(ReduceScalar(comms_->pp.get(), &n));
  return static_cast<int64_t>(n);
}

absl::StatusOr<double> RankModel::ForwardBackward(const std::vector<Tensor>& tokens,
                                                  const std::vector<Tensor>& targets, double grad_scale,
                                                  const RecomputeConfig& rc) {
  for (Model* m : models_) m->ZeroGrad();
  if (sync_ != nullptr) sync_->BeginStep(static_cast<int>(tokens.size()));
  double loss_sum = 0;
  if (pipe_ != nullptr) {
    BATON_ASSIGN_OR_RETURN(loss_sum, pipe_->RunStep(tokens, targets, grad_scale, rc));
  } else {
    for (size_t m = 0; m < tokens.size(); ++m) {
      loss_sum += whole_->ForwardBackward(tokens[m], targets[m], grad_scale, rc);
    }
  }
  for (Model* m : models_) BATON_RETURN_IF_ERROR(m->comm_status());
  if (sync_ != nullptr) BATON_RETURN_IF_ERROR(sync_->Finish());
#ifdef BATON_HAVE_CUDA
  if (nccl_dp_ != nullptr) {
    for (Model* m : models_) {
      Tensor flat = m->flat_grads();  // one all-reduce per chunk, ordered on the compute stream
      BATON_RETURN_IF_ERROR(nccl_dp_->AllReduceSum(flat));
    }
  }
#endif
  if (pipe_ != nullptr) BATON_RETURN_IF_ERROR(pipe_->SumTiedEmbeddingGrads());
  if (config_.parallel.tp > 1) {  // sequence-parallel norms: each tp rank saw its share of the tokens
    for (Model* m : models_) {
      for (Param& p : m->params()) {
        if (p.tp_sum_grad) BATON_RETURN_IF_ERROR(tp_coll_->AllReduceSum(p.grad));  // host or device grads
      }
    }
  }
  if (dp_ > 1) BATON_RETURN_IF_ERROR(ReduceScalar(comms_->dp.get(), &loss_sum));
  return loss_sum;
}

absl::StatusOr<double> RankModel::ClipGradNorm(float max_norm) {
  // One GPU model: the scale is applied inside AdamW's pass.
  const bool scale_in_adamw = whole_ && device_ == Device::kCuda;
  if (scale_in_adamw && config_.parallel.tp == 1) return GradNormFlat(whole_->flat_grads(), max_norm, &grad_scale_);
  // Sum of squares of the logical gradient: a tensor replicated over tp is
  // counted by tp rank 0, the tied embedding copy not at all.
  double sum = 0;
  for (Model* m : models_) {
    for (Param& p : m->params()) {
      if (IsEmbeddingCopy(*m, p) || (p.shard_dim < 0 && tp_rank_ != 0)) continue;
      BATON_ASSIGN_OR_RETURN(const double s, ops::SumSquares(p.grad));
      sum += s;
    }
  }
  if (comms_ != nullptr) {
    BATON_RETURN_IF_ERROR(ReduceScalar(comms_->tp.get(), &sum));
    BATON_RETURN_IF_ERROR(ReduceScalar(comms_->pp.get(), &sum));
  }
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const auto scale = static_cast<float>(max_norm / norm);
    if (scale_in_adamw) {
      grad_scale_ = scale;
      return norm;
    }
    for (Model* m : models_) {
      for (Param& p : m->params()) BATON_RETURN_IF_ERROR(ops::Scale(p.grad, scale));
    }
  }
  return norm;
}

absl::Status RankModel::OptimizerStep(float lr) {
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

int64_t RankModel::optimizer_step() const { return opts_[0].step(); }

absl::StatusOr<double> RankModel::ValidationLoss(const Sampler& sampler) {
  if (dp_rank_ != 0) return -1.0;
  if (pipe_ != nullptr) return pipe_->ValidationLoss(sampler, config_);
  const int64_t b = config_.train.micro_batch_size, t = config_.train.seq_len;
  const int64_t batches = std::min<int64_t>(config_.train.eval_batches, sampler.num_val_samples() / b);
  Tensor tokens = Tensor::Empty({b, t}, DType::kI32);
  Tensor targets = Tensor::Empty({b, t}, DType::kI32);
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    sampler.ValBatch(i, b, tokens, targets);
    sum += whole_->Loss(tokens, targets);
  }
  BATON_RETURN_IF_ERROR(whole_->comm_status());
  return batches > 0 ? sum / static_cast<double>(batches * b * t) : -1.0;
}

std::vector<TensorShard> RankModel::CheckpointShards() {
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

absl::StatusOr<LoadedCheckpoint> RankModel::Load(const ShardReader& read) {
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

}  // namespace baton
