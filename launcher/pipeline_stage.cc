// A pipeline stage's model parts and their StageWork (see pipeline_stage.h).
#include "launcher/pipeline_stage.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "runtime/cuda_allocator.h"
#include "runtime/ops.h"

namespace baton {
namespace {

// Tags outside the executor's [0, 2·m·parts) and the trace gather's kMaxCommTag.
constexpr int kTiedGradTag = kMaxCommTag - 1;
constexpr int kValidationTag = kMaxCommTag - 2;

}  // namespace

double LayerFlopsPerToken(const ModelConfig& m, int64_t seq) {
  const double c = m.dim, d = m.dim / m.heads, h = m.heads, kv = m.kv_heads, f = m.ffn_dim;
  const double gemm = 2 * (c * h * d + 2 * c * kv * d + h * d * c + 3 * c * f);
  const double attention = 2 * h * d * static_cast<double>(seq);  // causal: half of 4·T·H·D
  return gemm + attention;
}

double HeadFlopsPerToken(const ModelConfig& m) { return 2.0 * m.dim * m.vocab_size + 5.0 * m.vocab_size; }

std::vector<ModelSlice> SplitLayers(const ModelConfig& model, int parts, int64_t seq,
                                    const std::vector<int>& layers_per_part) {
  const int layers = model.layers;
  std::vector<int> count(parts, 0);
  if (!layers_per_part.empty()) {
    count = layers_per_part;
  } else {
    // Contiguous partition minimising the costliest part (min-max linear
    // partition by dynamic programming; parts ≤ layers, tiny sizes).
    const double layer = LayerFlopsPerToken(model, seq), head = HeadFlopsPerToken(model);
    const double inf = 1e300;
    // best[i][j]: least max cost putting layers [0, j) into parts [0, i).
    std::vector<std::vector<double>> best(parts + 1, std::vector<double>(layers + 1, inf));
    std::vector<std::vector<int>> cut(parts + 1, std::vector<int>(layers + 1, 0));
    best[0][0] = 0;
    for (int i = 1; i <= parts; ++i) {
      for (int j = i; j <= layers - (parts - i); ++j) {
        for (int k = i - 1; k < j; ++k) {  // part i-1 holds layers [k, j)
          if (best[i - 1][k] >= inf) continue;
          const double cost = (j - k) * layer + (i == parts ? head : 0);
          const double worst = std::max(best[i - 1][k], cost);
          if (worst < best[i][j] - 1e-9 * worst) {
            best[i][j] = worst;
            cut[i][j] = k;
          }
        }
      }
    }
    for (int i = parts, j = layers; i > 0; --i) {
      count[i - 1] = j - cut[i][j];
      j = cut[i][j];
    }
  }
  std::vector<ModelSlice> out;
  int first = 0;
  for (int i = 0; i < parts; ++i) {
    out.push_back({first, first + count[i], i == 0, i == parts - 1});
    first += count[i];
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
    case PipelineScheduleKind::kZbH1: spec.kind = ScheduleKind::kZeroBubbleH1; break;
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
                                                                     TraceRecorder* trace, TensorParallel tp,
                                                                     Device device) {
  BATON_ASSIGN_OR_RETURN(ScheduleSpec spec, PipelineSpecOf(config));
  if (pp.size() != spec.stages) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.pp=", spec.stages, " but the pipeline group has ", pp.size(), " ranks"));
  }
  BATON_ASSIGN_OR_RETURN(Schedule schedule, BuildSchedule(spec));
  std::unique_ptr<PipelineStage> s(new PipelineStage(config, pp, spec, std::move(schedule), trace));
  s->tp_ = tp;
  s->device_ = device;
  s->compute_ = device == Device::kCuda && config.train.precision == "bf16" ? DType::kBF16 : DType::kF32;
  s->slices_ = SplitLayers(config.model, NumParts(spec), config.train.seq_len, config.parallel.layers_per_stage);
  for (int c = 0; c < spec.virtual_stages; ++c) {
    const ModelSlice& slice = s->slices_[ModelPart(spec, s->stage_, c)];
    BATON_ASSIGN_OR_RETURN(Model m, Model::Create(config.model, s->compute_, device, slice, tp));
    m.Init(static_cast<uint64_t>(config.train.seed));
    s->chunks_.push_back(std::move(m));
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

Tensor PipelineStage::DeviceLike(const Tensor& host) const {
  if (device_ == Device::kCpu) return Tensor::Empty(host.shape(), host.dtype());
  return Tensor::Empty(host.shape(), host.dtype(), DefaultCudaAllocator());
}

Tensor PipelineStage::Up(const Tensor& host) const {
  if (device_ == Device::kCpu) return host;
  Tensor d = DeviceLike(host);
  d.CopyFrom(host);
  return d;
}

void PipelineStage::Down(const Tensor& dev, Tensor& host) const {
  if (dev.raw() != host.raw()) host.CopyFrom(dev);  // device to host: synchronous
}

int64_t PipelineStage::Rows(int64_t batch, int64_t seq) const {
  return tp_.sequence_parallel && tp_.size > 1 ? batch * seq / tp_.size : batch * seq;
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
  return {Rows(t.dim(0), t.dim(1)), int64_t{config_.model.dim}};
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
  const Tensor in = input != nullptr ? Up(*input) : Tensor();
  Tensor out = output != nullptr ? (device_ == Device::kCpu ? *output : DeviceLike(*output)) : Tensor();
  loss_sum_ += chunks_[chunk].PartForward(slot, (*tokens_)[mb], (*targets_)[mb], input != nullptr ? &in : nullptr,
                                          output != nullptr ? &out : nullptr, grad_scale_, rc_);
  if (output != nullptr) Down(out, *output);
  return absl::OkStatus();
}

absl::Status PipelineStage::Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) {
  auto it = slot_of_[chunk].find(mb);
  if (it == slot_of_[chunk].end()) {
    return absl::InternalError(absl::StrCat("backward of micro-batch ", mb, " chunk ", chunk, " before its forward"));
  }
  const Tensor go = grad_output != nullptr ? Up(*grad_output) : Tensor();
  Tensor gi = grad_input != nullptr ? (device_ == Device::kCpu ? *grad_input : DeviceLike(*grad_input)) : Tensor();
  chunks_[chunk].PartBackward(it->second, grad_output != nullptr ? &go : nullptr, grad_input != nullptr ? &gi : nullptr);
  if (grad_input != nullptr) Down(gi, *grad_input);
  free_slots_[chunk].push_back(it->second);
  slot_of_[chunk].erase(it);
  return absl::OkStatus();
}

absl::Status PipelineStage::BackwardInput(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) {
  auto it = slot_of_[chunk].find(mb);
  if (it == slot_of_[chunk].end()) {
    return absl::InternalError(absl::StrCat("backward of micro-batch ", mb, " chunk ", chunk, " before its forward"));
  }
  const Tensor go = grad_output != nullptr ? Up(*grad_output) : Tensor();
  Tensor gi = grad_input != nullptr ? (device_ == Device::kCpu ? *grad_input : DeviceLike(*grad_input)) : Tensor();
  chunks_[chunk].PartBackwardInput(it->second, grad_output != nullptr ? &go : nullptr,
                                   grad_input != nullptr ? &gi : nullptr);
  if (grad_input != nullptr) Down(gi, *grad_input);
  return absl::OkStatus();  // the slot stays until the weight half
}

absl::Status PipelineStage::BackwardWeight(int mb, int chunk) {
  auto it = slot_of_[chunk].find(mb);
  if (it == slot_of_[chunk].end()) {
    return absl::InternalError(absl::StrCat("weight backward of micro-batch ", mb, " chunk ", chunk, " before its forward"));
  }
  chunks_[chunk].PartBackwardWeight(it->second);
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

absl::StatusOr<double> PipelineStage::ValidationLoss(const Sampler& sampler, const JobConfig& config) {
  const int64_t b = config.train.micro_batch_size, t = config.train.seq_len;
  const int64_t batches = std::min<int64_t>(config.train.eval_batches, sampler.num_val_samples() / b);
  Tensor tokens = Tensor::Empty({b, t}, DType::kI32);
  Tensor targets = Tensor::Empty({b, t}, DType::kI32);
  Tensor act[2] = {Tensor::Empty({Rows(b, t), config.model.dim}, compute_),
                   Tensor::Empty({Rows(b, t), config.model.dim}, compute_)};
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
      const Tensor in_here = part > 0 ? Up(in) : Tensor();
      if (part == parts - 1) {
        sum += m.PartLoss(tokens, targets, part > 0 ? &in_here : nullptr, nullptr);
        continue;
      }
      Tensor out_here = device_ == Device::kCpu ? out : DeviceLike(out);
      m.PartLoss(tokens, targets, part > 0 ? &in_here : nullptr, &out_here);
      Down(out_here, out);
      if (!HoldsPart(part + 1)) {
        BATON_RETURN_IF_ERROR(pp_.Send(out, LocatePart(spec_, part + 1).stage, kValidationTag));
      }
    }
  }
  for (Model& m : chunks_) BATON_RETURN_IF_ERROR(m.comm_status());
  Tensor total = Tensor::Empty({1}, DType::kF64);
  total.data<double>()[0] = sum;
  BATON_RETURN_IF_ERROR(pp_.AllReduceSum(total));
  return batches > 0 ? total.data<double>()[0] / static_cast<double>(batches * b * t) : -1;
}

}  // namespace baton
