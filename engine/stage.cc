// A pipeline stage's model parts and their StageWork (see stage.h).
#include "engine/stage.h"

#include <algorithm>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/stage_split.h"
#include "kernels/check.h"
#include "runtime/cuda_allocator.h"
#include "runtime/distill_loss.h"
#include "runtime/ops.h"

namespace baton {
namespace {

// A tag outside the executor's [0, 2·m·parts) and the trace gather's kMaxCommTag.
constexpr int kTiedGradTag = kMaxCommTag - 1;

}  // namespace

// Validation: each F is one part's forward without a backward (Model::PartLoss).
class Stage::EvalWork final : public StageWork {
 public:
  EvalWork(Stage& stage, const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets)
      : s_(stage), tokens_(tokens), targets_(targets), loss_(tokens.size(), 0.0) {}

  DType activation_dtype() const override { return s_.config_.compute; }
  Shape InputShape(int mb, int chunk) override { return Rows(mb); }
  Shape OutputShape(int mb, int chunk) override { return Rows(mb); }
  absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) override {
    const Tensor in = input != nullptr ? s_.Up(*input) : Tensor();
    Tensor out = output == nullptr                      ? Tensor()
                 : s_.config_.device == Device::kCpu ? *output
                                                     : s_.DeviceLike(*output);
    loss_[mb] = s_.chunks_[chunk].PartLoss(tokens_[mb], targets_[mb], input != nullptr ? &in : nullptr,
                                           output != nullptr ? &out : nullptr);
    if (output != nullptr) s_.Down(out, *output);
    return s_.ChunkStatus(chunk);
  }
  absl::Status Backward(int mb, int chunk, const Tensor*, Tensor*) override {
    return absl::InternalError("validation runs no backward");
  }
  double LossSum() const {
    double sum = 0;
    for (double l : loss_) sum += l;
    return sum;
  }

 private:
  Shape Rows(int mb) const {
    const Tensor& t = tokens_[mb];
    return {s_.Rows(t.dim(0), t.dim(1)), int64_t{s_.config_.model.dim}};
  }
  Stage& s_;
  const std::vector<Tensor>& tokens_;
  const std::vector<Tensor>& targets_;
  std::vector<double> loss_;  // [mb] on the head's stage
};

// ---- construction

Stage::Stage(const EngineConfig& config, Communicator& pp, ScheduleSpec spec, Schedule schedule,
             TraceRecorder* trace, TensorParallel tp, int rank)
    : config_(config), pp_(pp), spec_(spec), stage_(pp.rank()), rank_(rank), tp_(tp) {
  executor_ = std::make_unique<PipelineExecutor>(schedule, spec_, stage_, pp_, trace, PipelineExecutorOptions{}, rank);
}

Stage::~Stage() = default;

absl::StatusOr<std::unique_ptr<Stage>> Stage::Create(const EngineConfig& config, Communicator& pp,
                                                     TraceRecorder* trace, TensorParallel tp, int rank) {
  const ScheduleSpec spec = config.TrainSchedule();
  if (pp.size() != spec.stages) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.pp=", spec.stages, " but the pipeline group has ", pp.size(), " ranks"));
  }
  BATON_ASSIGN_OR_RETURN(Schedule schedule, BuildSchedule(spec));
  std::unique_ptr<Stage> s(new Stage(config, pp, spec, std::move(schedule), trace, tp, rank));
  s->slices_ = SplitLayers(config.model, NumParts(spec), config.seq_len, config.pipeline.layers_per_part);
  for (int c = 0; c < spec.virtual_stages; ++c) {
    const ModelSlice& slice = s->slices_[ModelPart(spec, s->stage_, c)];
    BATON_ASSIGN_OR_RETURN(Model m, Model::Create(config.model, config.compute, config.device, slice, tp));
    // Kernel plans for the micro-batch shape build while the host draws the weights.
    std::future<absl::Status> prepared = m.PrepareKernelsAsync(config.micro_batch_size, config.seq_len);
    m.Init(static_cast<uint64_t>(config.seed));
    BATON_RETURN_IF_ERROR(prepared.get());
    s->chunks_.push_back(std::move(m));
  }
  if (config.teacher.enabled) {
    if (!config.teacher.offline) {
      BATON_ASSIGN_OR_RETURN(s->teacher_, StageTeacher::Create(config, spec, s->stage_, pp, tp));
    }
    for (Model& m : s->chunks_) {
      if (m.slice().head) s->InstallDistillLoss(m);
    }
  }
  s->slot_of_.resize(spec.virtual_stages);
  s->free_slots_.resize(spec.virtual_stages);
  s->slots_made_.assign(spec.virtual_stages, 0);
  return s;
}

std::vector<Model*> Stage::models() {
  std::vector<Model*> out;
  for (Model& m : chunks_) out.push_back(&m);
  return out;
}

Tensor Stage::DeviceLike(const Tensor& host) const {
  if (config_.device == Device::kCpu) return Tensor::Empty(host.shape(), host.dtype());
  return Tensor::Empty(host.shape(), host.dtype(), DefaultCudaAllocator());
}

Tensor Stage::Up(const Tensor& host) const {
  if (config_.device == Device::kCpu) return host;
  Tensor d = DeviceLike(host);
  d.CopyFrom(host);
  return d;
}

void Stage::Down(const Tensor& dev, Tensor& host) const {
  if (dev.raw() != host.raw()) host.CopyFrom(dev);  // device to host: synchronous
}

int64_t Stage::Rows(int64_t batch, int64_t seq) const {
  return tp_.sequence_parallel && tp_.size > 1 ? batch * seq / tp_.size : batch * seq;
}

std::string Stage::Describe() const {
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

absl::StatusOr<double> Stage::RunStep(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                      double grad_scale) {
  BATON_CHECK(static_cast<int>(tokens.size()) == spec_.microbatches && targets.size() == tokens.size());
  tokens_ = &tokens;
  targets_ = &targets;
  grad_scale_ = grad_scale;
  mb_loss_.assign(tokens.size(), 0.0);
  mb_kl_.assign(tokens.size(), 0.0);
  mb_ce_.assign(tokens.size(), 0.0);
  BATON_RETURN_IF_ERROR(UploadTeacherTopK());
  BATON_RETURN_IF_ERROR(executor_->RunStep(*this));
  double sum = 0;
  for (double l : mb_loss_) sum += l;  // nonzero on the head's stage only
  if (config_.teacher.enabled) return FinishDistillStep(sum);
  if (pp_.size() == 1) return sum;
  Tensor loss = Tensor::Empty({1}, DType::kF64);
  loss.data<double>()[0] = sum;
  BATON_RETURN_IF_ERROR(pp_.AllReduceSum(loss));
  return loss.data<double>()[0];
}

Shape Stage::InputShape(int mb, int /*chunk*/) {
  const Tensor& t = (*tokens_)[mb];
  return {Rows(t.dim(0), t.dim(1)), int64_t{config_.model.dim}};
}

Shape Stage::OutputShape(int mb, int chunk) { return InputShape(mb, chunk); }

absl::StatusOr<int> Stage::SlotOf(int mb, int chunk, const char* what) {
  auto it = slot_of_[chunk].find(mb);
  if (it == slot_of_[chunk].end()) {
    return absl::InternalError(absl::StrCat(what, " of micro-batch ", mb, " chunk ", chunk, " before its forward"));
  }
  return it->second;
}

void Stage::TakeLoss(int mb, int chunk, int slot) {
  if (chunks_[chunk].slice().head) mb_loss_[mb] = chunks_[chunk].SlotLoss(slot);
}

absl::Status Stage::Forward(int mb, int chunk, const Tensor* input, Tensor* output) {
  int slot;
  if (!free_slots_[chunk].empty()) {
    slot = free_slots_[chunk].back();
    free_slots_[chunk].pop_back();
  } else {
    slot = slots_made_[chunk]++;
  }
  slot_of_[chunk][mb] = slot;
  forward_mb_ = mb;
  const Tensor in = input != nullptr ? Up(*input) : Tensor();
  Tensor out = output != nullptr ? (config_.device == Device::kCpu ? *output : DeviceLike(*output)) : Tensor();
  chunks_[chunk].PartForwardKeepLoss(slot, (*tokens_)[mb], (*targets_)[mb], input != nullptr ? &in : nullptr,
                                     output != nullptr ? &out : nullptr, grad_scale_, config_.recompute);
  if (output != nullptr) Down(out, *output);
  return ChunkStatus(chunk);
}

absl::Status Stage::ForwardAux(int mb, int chunk) { return teacher_->Forward(mb, chunk, (*tokens_)[mb]); }

void Stage::InstallDistillLoss(Model& head) {
  const DistillLossOptions options = config_.teacher.loss;
  const int64_t vocab_start = int64_t{config_.model.vocab_size} / tp_.size * tp_.rank;
  head.SetHeadLoss([this, options, vocab_start](Tensor& logits, const Tensor& targets,
                                                double grad_scale) -> absl::StatusOr<double> {
    const int mb = forward_mb_;
    TpCollectives* tp = tp_.size > 1 ? tp_.comm : nullptr;
    DistillLossSums sums;
    if (teacher_ == nullptr) {  // offline
      if (mb >= static_cast<int>(topk_.size())) {
        return absl::InternalError(absl::StrCat("no teacher top-k for micro-batch ", mb, " (SetTeacherTopK)"));
      }
      BATON_ASSIGN_OR_RETURN(sums, OfflineDistillLoss(logits, topk_[mb], targets, options, grad_scale, &logits, tp,
                                                      vocab_start));
    } else {
      BATON_ASSIGN_OR_RETURN(const Tensor teacher, teacher_->TakeLogits(mb));
      BATON_ASSIGN_OR_RETURN(sums, DistillLoss(logits, teacher, targets, options, grad_scale, &logits, tp,
                                               vocab_start));
    }
    mb_kl_[mb] = sums.kl;
    mb_ce_[mb] = sums.ce;
    return sums.loss;
  });
}

absl::Status Stage::UploadTeacherTopK() {
  if (config_.device != Device::kCuda || !config_.teacher.enabled || !config_.teacher.offline) return absl::OkStatus();
  if (std::none_of(chunks_.begin(), chunks_.end(), [](const Model& m) { return m.slice().head; })) {
    topk_.clear();  // only the head's stage reads them
    return absl::OkStatus();
  }
  if (topk_upload_ == nullptr) {
    BATON_ASSIGN_OR_RETURN(topk_upload_, TeacherTopKUpload::Create());
  }
  absl::StatusOr<std::vector<TeacherTopK>> up = topk_upload_->Upload(topk_, config_.model.vocab_size);
  if (!up.ok()) return absl::Status(up.status().code(), absl::StrCat("offline distillation: ", up.status().message()));
  topk_ = *std::move(up);
  return absl::OkStatus();
}

absl::StatusOr<double> Stage::FinishDistillStep(double loss_sum) {
  if (teacher_ != nullptr) BATON_RETURN_IF_ERROR(teacher_->FinishStep());
  topk_.clear();
  Tensor sums = Tensor::Zeros({3}, DType::kF64);
  double* v = sums.data<double>();
  v[0] = loss_sum;
  for (size_t m = 0; m < mb_kl_.size(); ++m) {  // in micro-batch order, like the loss
    v[1] += mb_kl_[m];
    v[2] += mb_ce_[m];
  }
  if (pp_.size() > 1) BATON_RETURN_IF_ERROR(pp_.AllReduceSum(sums));
  distill_sums_ = {v[0], v[1], v[2]};
  return v[0];
}

absl::Status Stage::BackwardOf(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input, bool split) {
  BATON_ASSIGN_OR_RETURN(const int slot, SlotOf(mb, chunk, "backward"));
  const Tensor go = grad_output != nullptr ? Up(*grad_output) : Tensor();
  Tensor gi = grad_input != nullptr ? (config_.device == Device::kCpu ? *grad_input : DeviceLike(*grad_input))
                                    : Tensor();
  const Tensor* go_here = grad_output != nullptr ? &go : nullptr;
  Tensor* gi_here = grad_input != nullptr ? &gi : nullptr;
  if (split) {
    chunks_[chunk].PartBackwardInput(slot, go_here, gi_here);
  } else {
    chunks_[chunk].PartBackward(slot, go_here, gi_here);
  }
  if (grad_input != nullptr) Down(gi, *grad_input);
  TakeLoss(mb, chunk, slot);
  if (!split) {  // a split backward keeps the slot until its weight half
    free_slots_[chunk].push_back(slot);
    slot_of_[chunk].erase(mb);
  }
  return ChunkStatus(chunk);
}

absl::Status Stage::Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) {
  return BackwardOf(mb, chunk, grad_output, grad_input, /*split=*/false);
}

absl::Status Stage::BackwardInput(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) {
  return BackwardOf(mb, chunk, grad_output, grad_input, /*split=*/true);
}

absl::Status Stage::BackwardWeight(int mb, int chunk) {
  BATON_ASSIGN_OR_RETURN(const int slot, SlotOf(mb, chunk, "weight backward"));
  chunks_[chunk].PartBackwardWeight(slot);
  free_slots_[chunk].push_back(slot);
  slot_of_[chunk].erase(mb);
  return ChunkStatus(chunk);
}

absl::Status Stage::SumTiedEmbeddingGrads() {
  if (!config_.model.tie_embeddings || spec_.stages == 1) return absl::OkStatus();
  const int last = spec_.stages - 1;
  if (stage_ != 0 && stage_ != last) return absl::OkStatus();
  Param* embed = nullptr;
  for (Model& m : chunks_) {
    if (Param* p = m.FindParam("embed")) embed = p;
  }
  BATON_CHECK_MSG(embed != nullptr, "first/last pipeline stage without an embedding table");
  const int peer = stage_ == 0 ? last : 0;
  // Through host memory (the pp group is an MPI or UCX communicator).
  Tensor mine = Tensor::Empty(embed->grad.shape(), embed->grad.dtype());
  mine.CopyFrom(embed->grad);
  Tensor theirs = Tensor::Empty(embed->grad.shape(), embed->grad.dtype());
  BATON_ASSIGN_OR_RETURN(CommRequestPtr recv, pp_.IRecv(theirs, peer, kTiedGradTag));
  BATON_ASSIGN_OR_RETURN(CommRequestPtr send, pp_.ISend(mine, peer, kTiedGradTag));
  BATON_RETURN_IF_ERROR(send->Wait());
  BATON_RETURN_IF_ERROR(recv->Wait());
  return ops::AddInPlace(embed->grad, Up(theirs));  // a + b == b + a: both stages hold the same bits
}

absl::StatusOr<double> Stage::ValidationLoss(const Sampler& sampler) {
  const int64_t b = config_.micro_batch_size, t = config_.seq_len;
  const int64_t batches = std::min<int64_t>(config_.eval_batches, sampler.num_val_samples() / b);
  if (batches <= 0) return -1.0;
  std::vector<Tensor> tokens, targets;
  for (int64_t i = 0; i < batches; ++i) {
    tokens.push_back(Tensor::Empty({b, t}, DType::kI32));
    targets.push_back(Tensor::Empty({b, t}, DType::kI32));
    sampler.ValBatch(i, b, tokens.back(), targets.back());
  }
  if (eval_executor_ == nullptr) {
    const ScheduleSpec spec = config_.EvalSchedule(static_cast<int>(batches));
    BATON_ASSIGN_OR_RETURN(Schedule schedule, BuildSchedule(spec));
    eval_executor_ = std::make_unique<PipelineExecutor>(schedule, spec, stage_, pp_, nullptr,
                                                        PipelineExecutorOptions{}, rank_);
  }
  EvalWork work(*this, tokens, targets);
  BATON_RETURN_IF_ERROR(eval_executor_->RunStep(work));
  double sum = work.LossSum();
  if (pp_.size() > 1) {
    Tensor total = Tensor::Empty({1}, DType::kF64);
    total.data<double>()[0] = sum;
    BATON_RETURN_IF_ERROR(pp_.AllReduceSum(total));
    sum = total.data<double>()[0];
  }
  return sum / static_cast<double>(batches * b * t);
}

}  // namespace baton
