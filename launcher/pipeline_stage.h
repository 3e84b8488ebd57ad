// One pipeline stage of `baton train` (parallel.pp > 1): the model parts
// (chunks) this rank holds, each a Model slice (runtime/model.h), and the
// StageWork through which the PipelineExecutor (parallel/pipeline_executor.h)
// runs them on the schedule. RankModel (rank_model.h) owns the optimizer
// state and the step's other collectives; per step it calls RunStep, then
// SumTiedEmbeddingGrads after the dp gradient sum.
// Tensor parallelism lives inside each part: under sequence parallelism the
// activations between parts are this tp rank's (B·T/tp, C) share of the
// tokens, otherwise the full (B·T, C) (replicated over tp).
// On CUDA the parts live on the GPU and the activations between stages
// travel through host memory (the executor's buffers, in the compute
// dtype, over MPI or UCX): each part input is copied up before its
// forward, each output down after it (the same for gradients).
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
#include "launcher/config.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/tensor_parallel.h"

namespace baton {

// Part i of `parts`: embedding on part 0, head on the last; layers either
// as `layers_per_part` says, or split to balance the estimated cost of a
// part (its layers' training flops, plus the lm head's and loss's on the
// last part: with a large vocabulary the head weighs several layers, so the
// last stage gets fewer), ties broken towards earlier parts.
std::vector<ModelSlice> SplitLayers(const ModelConfig& model, int parts, int64_t seq,
                                    const std::vector<int>& layers_per_part = {});
// Forward flops per token of one decoder layer, and of the lm head + loss,
// at sequence length seq (the balance's cost estimate).
double LayerFlopsPerToken(const ModelConfig& model, int64_t seq);
double HeadFlopsPerToken(const ModelConfig& model);

// parallel.schedule etc. as a ScheduleSpec.
absl::StatusOr<ScheduleSpec> PipelineSpecOf(const JobConfig& config);

class PipelineStage final : public StageWork {
 public:
  // `pp` is this rank's pipeline group (size parallel.pp); it must outlive
  // the stage, as must tp.comm. Builds and initialises (train.seed) this
  // stage's parts on the CPU in f32, tensor-parallel as `tp` says, and
  // builds the schedule (its errors: InvalidArgument). `trace` (may be
  // null) receives the executor's events.
  static absl::StatusOr<std::unique_ptr<PipelineStage>> Create(const JobConfig& config, Communicator& pp,
                                                               TraceRecorder* trace, TensorParallel tp = {},
                                                               Device device = Device::kCpu);

  const ScheduleSpec& spec() const { return spec_; }
  int stage() const { return stage_; }
  std::vector<Model*> models();                // [chunk]
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
  // Mean validation loss per token over train.eval_batches micro-batches,
  // forward only, part by part with blocking sends (every stage returns it).
  absl::StatusOr<double> ValidationLoss(const Sampler& sampler, const JobConfig& config);

  // ---- StageWork
  DType activation_dtype() const override { return compute_; }
  Shape InputShape(int mb, int chunk) override;
  Shape OutputShape(int mb, int chunk) override;
  absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) override;
  absl::Status Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override;
  // zb-h1: the input gradient now, the weight gradients at BackwardWeight.
  absl::Status BackwardInput(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override;
  absl::Status BackwardWeight(int mb, int chunk) override;

 private:
  PipelineStage(const JobConfig& config, Communicator& pp, ScheduleSpec spec, Schedule schedule,
                TraceRecorder* trace);
  bool HoldsPart(int part) const;
  // Rows of the activations between parts: B·T, or B·T/tp under sequence parallelism.
  int64_t Rows(int64_t batch, int64_t seq) const;
  // A device copy of a host tensor (the tensor itself on the CPU); and back.
  Tensor Up(const Tensor& host) const;
  void Down(const Tensor& dev, Tensor& host) const;
  Tensor DeviceLike(const Tensor& host) const;  // uninitialised, same shape and dtype

  JobConfig config_;
  Communicator& pp_;
  ScheduleSpec spec_;
  int stage_;
  std::vector<ModelSlice> slices_;  // [part], every part's
  TensorParallel tp_;
  Device device_ = Device::kCpu;
  DType compute_ = DType::kF32;     // the parts' activation dtype
  std::vector<Model> chunks_;       // [chunk]
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
