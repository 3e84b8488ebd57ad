// One rank's pipeline stage: the model parts (chunks) it holds, each a Model
// slice (runtime/model.h), and the StageWork through which the
// PipelineExecutor (parallel/pipeline_executor.h) runs them on a schedule.
// It is the only step path: pp = 1 is a one-stage schedule over the whole
// model (F0 B0 F1 B1 ...), pp > 1 the configured schedule, and validation a
// forward-only schedule run by a second executor over the same chunks.
// RankTrainer (rank_trainer.h) owns the optimizer state and the step's other
// collectives; per step it calls RunStep, then SumTiedEmbeddingGrads after
// the dp gradient sum.
// Tensor parallelism lives inside each part: under sequence parallelism the
// activations between parts are this tp rank's (B·T/tp, C) share of the
// tokens, otherwise the full (B·T, C) (replicated over tp).
// On CUDA the parts live on the GPU. Between stages (pp > 1) the
// activations travel through host memory (the executor's buffers, in the
// compute dtype, over MPI or UCX): each part input is copied up before its
// forward, each output down after it (the same for gradients). With pp = 1
// nothing crosses a part boundary, so nothing is staged and the loss is read
// back once per micro-batch, after its backward is queued.
// Layout: the model is cut into pp·virtual_stages parts (SplitLayers), part
// c·pp + s on stage s as chunk c; embedding on part 0, head and loss on the
// last part. With tied embeddings the last part holds its own copy of the
// table; the two copies get the sum of both grads, so they stay equal.
// Distillation (EngineConfig::teacher): the stage also holds the teacher's
// chunks (stage_teacher.h), runs them from ForwardAux before each F, and
// the head chunk's loss is DistillLoss against the teacher's logits
// (Model::SetHeadLoss). Without a teacher none of that runs.
// Invariant: every stage's update equals the single-process one on the
// same parameters (losses and weights to fp32 rounding).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/engine_config.h"
#include "engine/stage_teacher.h"
#include "parallel/communicator.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "runtime/distill_offline.h"
#include "runtime/distill_offline_upload.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/tensor_parallel.h"

namespace baton {

class Stage final : public StageWork {
 public:
  // `pp` is this rank's pipeline group (size mesh.pp; MakeSelfCommunicator()
  // for one process); it must outlive the stage, as must tp.comm. Builds and
  // initialises (config.seed) this stage's parts on config.device,
  // tensor-parallel as `tp` says, and builds the schedule (its errors:
  // InvalidArgument). `trace` (may be null) receives the executor's events;
  // `rank` (the world rank, -1 unknown) is named in errors.
  static absl::StatusOr<std::unique_ptr<Stage>> Create(const EngineConfig& config, Communicator& pp,
                                                       TraceRecorder* trace, TensorParallel tp = {}, int rank = -1);
  ~Stage() override;

  const ScheduleSpec& spec() const { return spec_; }
  int stage() const { return stage_; }
  std::vector<Model*> models();  // [chunk]
  // "stage 0: part 0 (embedding, layers [0, 2)), part 2 (layers [4, 6))"
  std::string Describe() const;

  // Runs this stage's schedule for one step over the micro-batches
  // (tokens/targets [mb] (B, T) i32), grads scaled by grad_scale. Returns
  // the step's loss SUM over the pipeline (summed over pp: every stage
  // gets it), added in micro-batch order.
  absl::StatusOr<double> RunStep(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                 double grad_scale);
  // Tied embeddings with pp > 1: the first and last stage add each other's
  // embedding grad (both get the same bits). A no-op elsewhere.
  absl::Status SumTiedEmbeddingGrads();
  // Mean validation loss per token over eval_batches micro-batches of the
  // validation split, a forward-only schedule (every stage returns it).
  absl::StatusOr<double> ValidationLoss(const Sampler& sampler);

  // Online distillation (config.teacher.enabled): the teacher's chunks, and
  // the last step's KL and CE sums (summed over pp like the loss).
  StageTeacher* teacher() { return teacher_.get(); }
  DistillLossSums last_distill_sums() const { return distill_sums_; }
  // Offline distillation: the teacher's top-k rows of each micro-batch of
  // the next step ([mb], on the host; read on the head's stage only, which
  // on CUDA uploads them at the start of RunStep).
  void SetTeacherTopK(std::vector<TeacherTopK> topk) { topk_ = std::move(topk); }

  // ---- StageWork
  DType activation_dtype() const override { return config_.compute; }
  Shape InputShape(int mb, int chunk) override;
  Shape OutputShape(int mb, int chunk) override;
  absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) override;
  absl::Status Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override;
  // zb-h1: the input gradient now, the weight gradients at BackwardWeight.
  absl::Status BackwardInput(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override;
  absl::Status BackwardWeight(int mb, int chunk) override;
  // Distillation: the teacher's chunk forward of the same micro-batch.
  bool HasAuxForward() const override { return teacher_ != nullptr; }
  absl::Status ForwardAux(int mb, int chunk) override;

 private:
  class EvalWork;  // the forward-only StageWork of validation (stage.cc)

  Stage(const EngineConfig& config, Communicator& pp, ScheduleSpec spec, Schedule schedule, TraceRecorder* trace,
        TensorParallel tp, int rank);
  // Rows of the activations between parts: B·T, or B·T/tp under sequence parallelism.
  int64_t Rows(int64_t batch, int64_t seq) const;
  // A device copy of a host tensor (the tensor itself on the CPU); and back.
  Tensor Up(const Tensor& host) const;
  void Down(const Tensor& dev, Tensor& host) const;
  Tensor DeviceLike(const Tensor& host) const;  // uninitialised, same shape and dtype
  // The slot of (mb, chunk)'s forward; NotFound-style Internal error before it.
  absl::StatusOr<int> SlotOf(int mb, int chunk, const char* what);
  // The status of the chunk's tensor-parallel collectives after a call.
  absl::Status ChunkStatus(int chunk) const { return chunks_[chunk].comm_status(); }
  // B (split = false) or I: the slot's backward, the loss read after it is queued.
  absl::Status BackwardOf(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input, bool split);
  // The head chunk's loss of mb, read after its backward was queued.
  void TakeLoss(int mb, int chunk, int slot);
  // Distillation: the head chunk's loss becomes DistillLoss against the teacher.
  void InstallDistillLoss(Model& head);
  // The step's end under distillation: the teacher's sends, the pp sums of loss, KL and CE.
  absl::StatusOr<double> FinishDistillStep(double loss_sum);
  // Offline on CUDA: the step's top-k rows to the device (the head's stage only).
  absl::Status UploadTeacherTopK();

  EngineConfig config_;
  Communicator& pp_;
  ScheduleSpec spec_;
  int stage_;
  int rank_;
  std::vector<ModelSlice> slices_;  // [part], every part's
  TensorParallel tp_;
  std::vector<Model> chunks_;       // [chunk]
  std::unique_ptr<PipelineExecutor> executor_;
  std::unique_ptr<PipelineExecutor> eval_executor_;  // built on the first validation

  // Per step: the micro-batches and the activation slot of each in-flight one.
  const std::vector<Tensor>* tokens_ = nullptr;
  const std::vector<Tensor>* targets_ = nullptr;
  double grad_scale_ = 0;
  std::vector<double> mb_loss_;                         // [mb] on the head's stage
  std::vector<absl::flat_hash_map<int, int>> slot_of_;  // [chunk] mb -> slot
  std::vector<std::vector<int>> free_slots_;            // [chunk]
  std::vector<int> slots_made_;                         // [chunk]

  // Distillation (null: training).
  std::unique_ptr<StageTeacher> teacher_;
  std::vector<TeacherTopK> topk_;                       // offline: [mb] of the step (on the device on CUDA)
  std::unique_ptr<TeacherTopKUpload> topk_upload_;      // offline on CUDA, head's stage: made on first use
  int forward_mb_ = -1;                                 // the micro-batch of the running Forward
  std::vector<double> mb_kl_, mb_ce_;                   // [mb] on the head's stage
  DistillLossSums distill_sums_;
};

}  // namespace baton
