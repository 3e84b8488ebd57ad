// A pipeline stage's model parts and their StageWork (see pipeline_stage.h).
#include "launcher/pipeline_stage.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "runtime/ops.h"

namespace baton {
namespace {

// Tags outside the executor's [0, 2·m·parts) and the trace gather's kMaxCommTag.
constexpr int kTiedGradTag = kMaxCommTag - 1;
constexpr int kValidationTag = kMaxCommTag - 2;
constexpr int kCheckpointTag = kMaxCommTag - 3;

Tensor OnHost(const Tensor& t) {
  if (t.device() == Device::kCpu) return t;
  Tensor h = Tensor::Empty(t.shape(), t.dtype());
  h.CopyFrom(t);
  return h;
}

}  // namespace

std::vector<ModelSlice> SplitLayers(int layers, int parts) {
  std::vector<ModelSlice> out;
  int first = 0;
  for (int i = 0; i < parts; ++i) {
    const int n = layers / parts + (i < layers % parts ? 1 : 0);
    out.push_back({first, first + n, i == 0, i == parts - 1});
    first += n;
  }
  return out;
}

absl::StatusOr<ScheduleSpec> PipelineSpecOf(const JobConfig& config) {
  const ParallelConfig& p = config.parallel;
  ScheduleSpec spec;
  switch (p.schedule) {
    case PipelineScheduleKind::kGPipe: spec.kind = ScheduleKind::kGPipe; break;
    case PipelineScheduleKind::k1F1B: spec.kind = ScheduleKind::k1F1B; break;
    case PipelineScheduleKind::kInterleaved: spec.kind = ScheduleKind::kInterleaved1F1B; break;
    case PipelineScheduleKind::kZbH1:
      return absl::FailedPreconditionError(
          "parallel.schedule=\"zb-h1\" needs a split backward (input and weight gradients apart), "
          "which the model does not have yet; use \"gpipe\", \"1f1b\" or \"interleaved\"");
  }
  spec.stages = p.pp;
  spec.microbatches = config.microbatches();
  spec.virtual_stages = p.virtual_stages;
  return spec;
}

// ---- construction

PipelineStage::PipelineStage(const JobConfig& config, Communicator& pp, ScheduleSpec spec, Schedule schedule,
                             TraceRecorder* trace)
    : config_(config), pp_(pp), spec_(spec), stage_(pp.rank()) {
  executor_ = std::make_unique<PipelineExecutor>(schedule, spec_, stage_, pp_, trace);
}

absl::StatusOr<std::unique_ptr<PipelineStage>> PipelineStage::Create(const JobConfig& config, Communicator& pp,
                                                                     TraceRecorder* trace) {
  BATON_ASSIGN_OR_RETURN(ScheduleSpec spec, PipelineSpecOf(config));
  if (pp.size() != spec.stages) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.pp=", spec.stages, " but the pipeline group has ", pp.size(), " ranks"));
  }
  BATON_ASSIGN_OR_RETURN(Schedule schedule, BuildSchedule(spec));
  std::unique_ptr<PipelineStage> s(new PipelineStage(config, pp, spec, std::move(schedule), trace));
  s->slices_ = SplitLayers(config.model.layers, NumParts(spec));
  for (int c = 0; c < spec.virtual_stages; ++c) {
    const ModelSlice& slice = s->slices_[ModelPart(spec, s->stage_, c)];
    BATON_ASSIGN_OR_RETURN(Model m, Model::Create(config.model, DType::kF32, Device::kCpu, slice));
    m.Init(static_cast<uint64_t>(config.train.seed));
    s->chunks_.push_back(std::move(m));
    s->opts_.emplace_back(config.train.optimizer);
  }
  s->slot_of_.resize(spec.virtual_stages);
  s->free_slots_.resize(spec.virtual_stages);
  s->slots_made_.assign(spec.virtual_stages, 0);
  return s;
}

bool PipelineStage::HoldsPart(int part) const { return LocatePart(spec_, part).stage == stage_; }

std::vector<Model*> PipelineStage::models() {
  std::vector<Model*> out;
  for (Model& m : chunks_) out.push_back(&m);
  return out;
}

std::vector<AdamWOptimizer*> PipelineStage::optimizers() {
  std::vector<AdamWOptimizer*> out;
  for (AdamWOptimizer& o : opts_) out.push_back(&o);
  return out;
}

int64_t PipelineStage::NumParameters() const {
  int64_t n = 0;
  for (const Model& m : chunks_) {
    n += m.NumParameters();
    if (m.holds_embedding_copy()) n -= int64_t{m.config().vocab_size} * m.config().dim;
  }
  return n;
}

std::string PipelineStage::Describe() const {
  std::vector<std::string> parts;
  for (int c = 0; c < spec_.virtual_stages; ++c) {
    const int part = ModelPart(spec_, stage_, c);
    const ModelSlice& s = slices_[part];
    parts.push_back(absl::StrCat("part ", part, " (", s.embedding ? "embedding, " : "", "layers [",
                                 s.first_layer, ", ", s.last_layer, ")", s.head ? ", head" : "", ")"));
  }
  return absl::StrCat("stage ", stage_, ": ", absl::StrJoin(parts, ", "));
}

// ---- one step

void PipelineStage::ZeroGrad() {
  for (Model& m : chunks_) m.ZeroGrad();
}

absl::StatusOr<double> PipelineStage::RunStep(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                              double grad_scale, const RecomputeConfig& rc) {
  BATON_CHECK(static_cast<int>(tokens.size()) == spec_.microbatches && targets.size() == tokens.size());
  tokens_ = &tokens;
  targets_ = &targets;
  grad_scale_ = grad_scale;
  rc_ = rc;
  loss_sum_ = 0;
  BATON_RETURN_IF_ERROR(executor_->RunStep(*this));
  Tensor loss = Tensor::Empty({1}, DType::kF64);
  loss.data<double>()[0] = loss_sum_;  // nonzero on the last stage only
  BATON_RETURN_IF_ERROR(pp_.AllReduceSum(loss));
  return loss.data<double>()[0];
}

Shape PipelineStage::InputShape(int mb, int /*chunk*/) {
  const Tensor& t = (*tokens_)[mb];
  return {t.dim(0) * t.dim(1), int64_t{config_.model.dim}};
}

Shape PipelineStage::OutputShape(int mb, int chunk) { return InputShape(mb, chunk); }

absl::Status PipelineStage::Forward(int mb, int chunk, const Tensor* input, Tensor* output) {
  int slot;
  if (!free_slots_[chunk].empty()) {
    slot = free_slots_[chunk].back();
    free_slots_[chunk].pop_back();
  } else {
    slot = slots_made_[chunk]++;
  }
  slot_of_[chunk][mb] = slot;
  loss_sum_ += chunks_[chunk].PartForward(slot, (*tokens_)[mb], (*targets_)[mb], input, output, grad_scale_, rc_);
  return absl::OkStatus();
}

absl::Status PipelineStage::Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) {
  auto it = slot_of_[chunk].find(mb);
  if (it == slot_of_[chunk].end()) {
    return absl::InternalError(absl::StrCat("backward of micro-batch ", mb, " chunk ", chunk, " before its forward"));
  }
  chunks_[chunk].PartBackward(it->second, grad_output, grad_input);
  free_slots_[chunk].push_back(it->second);
  slot_of_[chunk].erase(it);
  return absl::OkStatus();
}

absl::Status PipelineStage::SumTiedEmbeddingGrads() {
  if (!config_.model.tie_embeddings || spec_.stages == 1) return absl::OkStatus();
  const int last = spec_.stages - 1;
  if (stage_ != 0 && stage_ != last) return absl::OkStatus();
  Param* embed = nullptr;
  for (Model& m : chunks_) {
    if (Param* p = m.FindParam("embed")) embed = p;
  }
  BATON_CHECK_MSG(embed != nullptr, "first/last pipeline stage without an embedding table");
  const int peer = stage_ == 0 ? last : 0;
  Tensor theirs = Tensor::Empty(embed->grad.shape(), embed->grad.dtype());
  BATON_ASSIGN_OR_RETURN(CommRequestPtr recv, pp_.IRecv(theirs, peer, kTiedGradTag));
  BATON_ASSIGN_OR_RETURN(CommRequestPtr send, pp_.ISend(embed->grad, peer, kTiedGradTag));
  BATON_RETURN_IF_ERROR(send->Wait());
  BATON_RETURN_IF_ERROR(recv->Wait());
  ops::AddInPlace(embed->grad, theirs);  // a + b == b + a: both stages hold the same bits
  return absl::OkStatus();
}

absl::StatusOr<double> PipelineStage::ClipGradNorm(float max_norm) {
  Tensor sum = Tensor::Empty({1}, DType::kF64);
  double local = 0;
  for (Model& m : chunks_) {
    for (Param& p : m.params()) {
      if (m.holds_embedding_copy() && p.name == "embed") continue;  // counted on stage 0
      local += ops::SumSquares(p.grad);
    }
  }
  sum.data<double>()[0] = local;
  BATON_RETURN_IF_ERROR(pp_.AllReduceSum(sum));
  const double norm = std::sqrt(sum.data<double>()[0]);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (Model& m : chunks_) {
      for (Param& p : m.params()) ops::Scale(p.grad, scale);
    }
  }
  return norm;
}

void PipelineStage::OptimizerStep(float lr) {
  for (size_t c = 0; c < chunks_.size(); ++c) opts_[c].Step(chunks_[c].params(), lr);
}

// ---- validation and checkpoints

absl::StatusOr<double> PipelineStage::ValidationLoss(const Sampler& sampler, const JobConfig& config) {
  const int64_t b = config.train.micro_batch_size, t = config.train.seq_len;
  const int64_t batches = std::min<int64_t>(config.train.eval_batches, sampler.num_val_samples() / b);
  Tensor tokens = Tensor::Empty({b, t}, DType::kI32);
  Tensor targets = Tensor::Empty({b, t}, DType::kI32);
  Tensor act[2] = {Tensor::Empty({b * t, config.model.dim}, DType::kF32),
                   Tensor::Empty({b * t, config.model.dim}, DType::kF32)};
  const int parts = NumParts(spec_);
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    sampler.ValBatch(i, b, tokens, targets);
    // Parts in order; each blocking transfer waits only on earlier parts: no cycle.
    for (int part = 0; part < parts; ++part) {
      if (!HoldsPart(part)) continue;
      Model& m = chunks_[LocatePart(spec_, part).chunk];
      Tensor& in = act[part % 2];
      Tensor& out = act[(part + 1) % 2];
      if (part > 0 && !HoldsPart(part - 1)) {
        BATON_RETURN_IF_ERROR(pp_.Recv(in, LocatePart(spec_, part - 1).stage, kValidationTag));
      }
      if (part == parts - 1) {
        sum += m.PartLoss(tokens, targets, part > 0 ? &in : nullptr, nullptr);
        continue;
      }
      m.PartLoss(tokens, targets, part > 0 ? &in : nullptr, &out);
      if (!HoldsPart(part + 1)) {
        BATON_RETURN_IF_ERROR(pp_.Send(out, LocatePart(spec_, part + 1).stage, kValidationTag));
      }
    }
  }
  Tensor total = Tensor::Empty({1}, DType::kF64);
  total.data<double>()[0] = sum;
  BATON_RETURN_IF_ERROR(pp_.AllReduceSum(total));
  return batches > 0 ? total.data<double>()[0] / static_cast<double>(batches * b * t) : -1;
}

absl::StatusOr<std::vector<CheckpointTensor>> PipelineStage::GatherCheckpoint() {
  std::vector<CheckpointTensor> out;
  const char* kinds[3] = {"params/", "adam/m/", "adam/v/"};
  for (int part = 0; part < NumParts(spec_); ++part) {
    const PartLocation loc = LocatePart(spec_, part);
    if (loc.stage == stage_) {
      Model& m = chunks_[loc.chunk];
      AdamWOptimizer& opt = opts_[loc.chunk];
      std::vector<Param>& params = m.params();
      if (opt.num_states() == 0) opt.InitState(params);  // InitState resets: only before any step
      for (size_t i = 0; i < params.size(); ++i) {
        if (m.holds_embedding_copy() && params[i].name == "embed") continue;  // stage 0 has it
        const Tensor ts[3] = {params[i].value, opt.m(i), opt.v(i)};
        for (int k = 0; k < 3; ++k) {
          if (stage_ == 0) {
            out.push_back({kinds[k] + params[i].name, OnHost(ts[k]).Clone()});
          } else {
            BATON_RETURN_IF_ERROR(pp_.Send(OnHost(ts[k]), 0, kCheckpointTag));
          }
        }
      }
    } else if (stage_ == 0) {
      // Names and shapes from a CPU slice of that part; the values arrive in its order.
      BATON_ASSIGN_OR_RETURN(Model shape_of, Model::Create(config_.model, DType::kF32, Device::kCpu, slices_[part]));
      for (const Param& p : shape_of.params()) {
        if (shape_of.holds_embedding_copy() && p.name == "embed") continue;
        for (int k = 0; k < 3; ++k) {
          Tensor t = Tensor::Empty(p.value.shape(), DType::kF32);
          BATON_RETURN_IF_ERROR(pp_.Recv(t, loc.stage, kCheckpointTag));
          out.push_back({kinds[k] + p.name, std::move(t)});
        }
      }
    }
  }
  return out;
}

}  // namespace baton
