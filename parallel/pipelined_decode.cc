// The pipelined decode step (see pipelined_decode.h).
#include "parallel/pipelined_decode.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "parallel/schedule.h"

namespace baton {

DecodeGroups SplitDecodeBatch(const DecodeBatch& b, int groups) {
  const int64_t S = static_cast<int64_t>(b.block_tables.size()) / std::max<int64_t>(b.max_blocks, 1);
  std::vector<int64_t> rows_of(static_cast<size_t>(S), 0);
  for (int32_t s : b.row_seq) ++rows_of[s];
  std::vector<int32_t> with_rows;  // sequences that have rows here, in order
  for (int32_t s = 0; s < S; ++s) {
    if (rows_of[s] > 0) with_rows.push_back(s);
  }
  const int64_t n = static_cast<int64_t>(with_rows.size());
  const int G = static_cast<int>(std::clamp<int64_t>(groups, 1, std::max<int64_t>(n, 1)));
  std::vector<int> group_of(static_cast<size_t>(S), -1), local_seq(static_cast<size_t>(S), -1);
  DecodeGroups out;
  out.groups.resize(static_cast<size_t>(G));
  for (int64_t i = 0; i < n; ++i) {
    const int g = static_cast<int>(i * G / n);
    const int32_t s = with_rows[i];
    DecodeBatch& sub = out.groups[g];
    group_of[s] = g;
    local_seq[s] = static_cast<int>(sub.block_tables.size() / static_cast<size_t>(b.max_blocks));
    sub.max_blocks = b.max_blocks;
    sub.block_tables.insert(sub.block_tables.end(), b.block_tables.begin() + s * b.max_blocks,
                            b.block_tables.begin() + (s + 1) * b.max_blocks);
  }
  std::vector<int32_t> local_row(b.tokens.size(), -1);
  for (size_t r = 0; r < b.tokens.size(); ++r) {
    DecodeBatch& sub = out.groups[group_of[b.row_seq[r]]];
    local_row[r] = static_cast<int32_t>(sub.tokens.size());
    sub.tokens.push_back(b.tokens[r]);
    sub.row_seq.push_back(local_seq[b.row_seq[r]]);
    sub.row_pos.push_back(b.row_pos[r]);
  }
  for (size_t k = 0; k < b.logit_rows.size(); ++k) {
    const int32_t r = b.logit_rows[k];
    DecodeBatch& sub = out.groups[group_of[b.row_seq[r]]];
    out.logit_at.emplace_back(group_of[b.row_seq[r]], static_cast<int>(sub.logit_rows.size()));
    sub.logit_rows.push_back(local_row[r]);
    if (!b.greedy.empty()) sub.greedy.push_back(b.greedy[k]);
  }
  return out;
}

// The stage's side of one step: group mb through this stage's layers.
class PipelinedDecode::Work final : public StageWork {
 public:
  Work(DecodeModel& model, const DecodeGroups& groups) : model_(model), groups_(groups) {
    logits_.resize(groups.groups.size());
  }
  Shape InputShape(int mb, int) override { return {groups_.groups[mb].rows(), int64_t{model_.config().dim}}; }
  Shape OutputShape(int mb, int chunk) override { return InputShape(mb, chunk); }
  DType activation_dtype() const override { return model_.dtype(); }
  absl::Status Forward(int mb, int, const Tensor* input, Tensor* output) override {
    BATON_ASSIGN_OR_RETURN(logits_[mb], model_.ForwardPart(groups_.groups[mb], input, output));
    return absl::OkStatus();
  }
  absl::Status Backward(int, int, const Tensor*, Tensor*) override {
    return absl::InternalError("the pipelined decode runs forward-only schedules");
  }
  std::vector<Tensor>& logits() { return logits_; }

 private:
  DecodeModel& model_;
  const DecodeGroups& groups_;
  std::vector<Tensor> logits_;  // per group, on the last stage
};

PipelinedDecode::PipelinedDecode(DecodeModel& model, Communicator& pp, int max_groups,
                                 PipelineExecutorOptions options, int world_rank)
    : model_(&model),
      pp_(&pp),
      max_groups_(max_groups > 0 ? max_groups : pp.size()),
      options_(options),
      world_rank_(world_rank) {}

PipelinedDecode::~PipelinedDecode() = default;

absl::StatusOr<PipelineExecutor*> PipelinedDecode::ExecutorFor(int groups) {
  auto it = executors_.find(groups);
  if (it != executors_.end()) return it->second.get();
  ScheduleSpec spec;
  spec.kind = ScheduleKind::kGPipe;
  spec.stages = pp_->size();
  spec.microbatches = groups;
  spec.forward_only = true;
  BATON_ASSIGN_OR_RETURN(Schedule schedule, BuildSchedule(spec));
  auto exec = std::make_unique<PipelineExecutor>(schedule, spec, pp_->rank(), *pp_, nullptr, options_, world_rank_);
  PipelineExecutor* raw = exec.get();
  executors_.emplace(groups, std::move(exec));
  return raw;
}

absl::StatusOr<Tensor> PipelinedDecode::Forward(const DecodeBatch& batch) {
  if (batch.rows() == 0) return absl::InvalidArgumentError("PipelinedDecode::Forward: an empty batch");
  const DecodeGroups groups = SplitDecodeBatch(batch, max_groups_);
  last_groups_ = static_cast<int>(groups.groups.size());
  BATON_ASSIGN_OR_RETURN(PipelineExecutor * exec, ExecutorFor(last_groups_));
  Work work(*model_, groups);
  BATON_RETURN_IF_ERROR(exec->RunStep(work));
  const int64_t R = static_cast<int64_t>(batch.logit_rows.size()), V = config().vocab_size;
  Allocator* alloc = options_.allocator != nullptr ? options_.allocator : DefaultCpuAllocator();
  Tensor logits = Tensor::Empty({std::max<int64_t>(R, 1), V}, model_->dtype(), alloc);
  const int last = pp_->size() - 1;
  if (pp_->rank() == last) {
    for (int64_t r = 0; r < R; ++r) {
      const auto [g, k] = groups.logit_at[r];
      logits.Slice(r, 1).CopyFrom(work.logits()[g].Slice(k, 1));
    }
  }
  if (R == 0) return logits.Slice(0, 0);
  logits = logits.Slice(0, R);
  if (pp_->size() > 1) BATON_RETURN_IF_ERROR(pp_->Broadcast(logits, last));
  return logits;
}

}  // namespace baton
