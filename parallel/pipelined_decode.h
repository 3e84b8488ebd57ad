// A decode step through a pipeline: each stage runs a DecodeModel on its
// slice of layers (the cut engine/stage_split.h makes for training) over
// its own KV cache of those layers, and a step's hidden rows pass stage to
// stage. So that stages do not idle, the step's sequences are cut into up
// to `max_groups` micro-groups (default: the number of stages) that go
// through a forward-only schedule run by the PipelineExecutor (stage s runs
// group g while stage s+1 runs group g-1). The last stage assembles the
// logits and broadcasts them over the pipeline group, so every stage (and
// every tp rank of it) returns the same (R, V) and samples the same tokens:
// each stage runs its own copy of the scheduler and stays in step with the
// others without any other message.
// Limit: the groups drain at the end of each step (a step's fill and drain
// leave stages idle for pp-1 of G+pp-1 slots); overlapping one step's
// drain with the next step's fill would need each group to be scheduled on
// its own, which the generation loop does not do yet.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_executor.h"
#include "runtime/model_decode.h"

namespace baton {

class PipelinedDecode final : public DecodeForward {
 public:
  // `model` holds stage pp.rank()'s slice (v = 1: stage s holds part s);
  // `pp` is the pipeline group. Both outlive this object. `options` as for
  // the executor (its allocator must match the model's device).
  PipelinedDecode(DecodeModel& model, Communicator& pp, int max_groups = 0, PipelineExecutorOptions options = {},
                  int world_rank = -1);
  ~PipelinedDecode() override;

  // Logits (R, V) of the batch's logit rows, in its order, on every stage.
  // The batch must be the same on every stage.
  absl::StatusOr<Tensor> Forward(const DecodeBatch& batch) override;
  const ModelConfig& config() const override { return model_->config(); }
  // Micro-groups of the last step (tests check that several were in flight).
  int last_groups() const { return last_groups_; }

 private:
  class Work;
  absl::StatusOr<PipelineExecutor*> ExecutorFor(int groups);

  DecodeModel* model_;
  Communicator* pp_;
  int max_groups_;
  PipelineExecutorOptions options_;
  int world_rank_;
  int last_groups_ = 0;
  std::map<int, std::unique_ptr<PipelineExecutor>> executors_;  // by number of groups
};

// The batch's sequences cut into at most `groups` contiguous runs of
// sequences with rows (each a batch of its own), and for each of the
// batch's logit rows the (group, index among the group's logit rows).
struct DecodeGroups {
  std::vector<DecodeBatch> groups;
  std::vector<std::pair<int, int>> logit_at;
};
DecodeGroups SplitDecodeBatch(const DecodeBatch& batch, int groups);

}  // namespace baton
