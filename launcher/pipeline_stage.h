// One pipeline stage of `baton train` (parallel.pp > 1): the model parts
// (chunks) this rank holds, each a Model slice (runtime/model.h) with its
// own AdamW state, and the StageWork through which the PipelineExecutor
// (parallel/pipeline_executor.h) runs them on the schedule. The driver
// (train.cc) calls, per step: ZeroGrad, RunStep, SumTiedEmbeddingGrads, the
// dp all-reduce over models(), ClipGradNorm, OptimizerStep.
// Layout: the model is cut into pp·virtual_stages parts (SplitLayers), part
// c·pp + s on stage s as chunk c; embedding on part 0, head and loss on the
// last part. With tied embeddings the last part holds its own copy of the
// table; the two copies get the sum of both grads, so they stay equal.
// Invariant: every stage's update equals the single-process one on the
// same parameters (losses and weights to fp32 rounding).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "checkpoints/checkpoint.h"
#include "launcher/config.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/sampler.h"

namespace baton {

// Part i of `parts`: layers split as evenly as possible (the first
// layers % parts parts get one more), embedding on part 0, head on the last.
std::vector<ModelSlice> SplitLayers(int layers, int parts);

// parallel.schedule etc. as a ScheduleSpec; zb-h1 is FailedPrecondition
// (the model has no split backward yet).
absl::StatusOr<ScheduleSpec> PipelineSpecOf(const JobConfig& config);

class PipelineStage final : public StageWork {
 public:
  // `pp` is this rank's pipeline group (size parallel.pp); it must outlive
  // the stage. Builds and initialises (train.seed) this stage's parts on
  // the CPU in f32 and builds the schedule (its errors: InvalidArgument).
  // `trace` (may be null) receives the executor's events.
  static absl::StatusOr<std::unique_ptr<PipelineStage>> Create(const JobConfig& config, Communicator& pp,
                                                               TraceRecorder* trace);

  const ScheduleSpec& spec() const { return spec_; }
  int stage() const { return stage_; }
  std::vector<Model*> models();                // [chunk]
  std::vector<AdamWOptimizer*> optimizers();   // [chunk]
  // Parameters held here, not counting a tied embedding copy.
  int64_t NumParameters() const;
  // "stage 0: part 0 (embedding, layers [0, 2)), part 2 (layers [4, 6))"
  std::string Describe() const;

  void ZeroGrad();
  // Runs this stage's schedule for one step over the micro-batches
  // (tokens/targets [mb] (B, T) i32), grads scaled by grad_scale. Returns
  // the step's loss SUM over the pipeline (summed over pp: every stage
  // gets it).
  absl::StatusOr<double> RunStep(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                 double grad_scale, const RecomputeConfig& rc);
  // Tied embeddings with pp > 1: the first and last stage add each other's
  // embedding grad (both get the same bits). A no-op elsewhere.
  absl::Status SumTiedEmbeddingGrads();
  // Global norm over every stage (sum of squares all-reduced over pp, the
  // embedding copy counted once), then every grad scaled as ClipGradNorm.
  absl::StatusOr<double> ClipGradNorm(float max_norm);
  void OptimizerStep(float lr);

  // Mean validation loss per token over train.eval_batches micro-batches,
  // forward only, part by part with blocking sends (every stage returns it).
  absl::StatusOr<double> ValidationLoss(const Sampler& sampler, const JobConfig& config);
  // Collective over pp: every stage's params and Adam moments travel to
  // stage 0, which returns them all ("params/NAME", "adam/m/NAME",
  // "adam/v/NAME", full shapes); other stages return an empty list.
  // A gather, as a first step before per-rank parallel HDF5 writes.
  absl::StatusOr<std::vector<CheckpointTensor>> GatherCheckpoint();

  // ---- StageWork
  Shape InputShape(int mb, int chunk) override;
  Shape OutputShape(int mb, int chunk) override;
  absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) override;
  absl::Status Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override;

 private:
  PipelineStage(const JobConfig& config, Communicator& pp, ScheduleSpec spec, Schedule schedule,
                TraceRecorder* trace);
  bool HoldsPart(int part) const;

  JobConfig config_;
  Communicator& pp_;
  ScheduleSpec spec_;
  int stage_;
  std::vector<ModelSlice> slices_;  // [part], every part's
  std::vector<Model> chunks_;       // [chunk]
  std::vector<AdamWOptimizer> opts_;
  std::unique_ptr<PipelineExecutor> executor_;

  // Per step: the micro-batches and the activation slot of each in-flight one.
  const std::vector<Tensor>* tokens_ = nullptr;
  const std::vector<Tensor>* targets_ = nullptr;
  double grad_scale_ = 0;
  RecomputeConfig rc_;
  double loss_sum_ = 0;
  std::vector<absl::flat_hash_map<int, int>> slot_of_;  // [chunk] mb -> slot
  std::vector<std::vector<int>> free_slots_;            // [chunk]
  std::vector<int> slots_made_;                         // [chunk]
};

}  // namespace baton
