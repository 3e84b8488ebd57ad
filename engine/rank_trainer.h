// The per-rank trainer: what one rank holds of the model, and how it takes
// a training step in the dp × pp × tp mesh. Its model chunks are its
// pipeline stage's parts (engine/stage.h; the whole model when pp = 1, run
// as a one-stage schedule), each tensor-parallel
// over the tp group; it owns their AdamW state (all of it, or under ZeRO-1
// the params it owns: flat index k over its chunks' params, owner k mod dp).
// A step runs the micro-batches, then the collectives that make every
// layout apply the single-process update: gradient sums over dp (bucketed,
// started from the models' grad-ready hooks so they overlap the backward;
// on CUDA one NCCL all-reduce of the flat grads), the tied-embedding and
// sequence-parallel norm sums, the global grad norm over tp × pp, and under
// ZeRO-1 the owners' broadcast of updated params.
// Checkpoints leave and enter as this rank's slices of logical tensors
// (TensorShard): params written by dp replica 0 (replicated tensors by tp
// rank 0 only, the tied embedding copy never), moments by their owner, so
// every tensor is written exactly once and any layout reads any file.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoints/dist_checkpoint.h"
#include "engine/engine_config.h"
#include "engine/stage.h"
#include "parallel/grad_sync.h"
#include "parallel/mpi_communicator.h"
#include "parallel/trace.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/sampler.h"
#include "runtime/tensor_parallel.h"

namespace baton {

// Reads `shards` (their `local` tensors are the destinations) from one
// checkpoint; returns its step and attributes. Collective over the world
// under MPI.
using ShardReader = std::function<absl::Status(std::vector<TensorShard>& shards, int64_t* step,
                                               std::map<std::string, std::string>* attrs)>;

struct LoadedCheckpoint {
  bool weights_only = false;  // no optimizer or data state: a new run from step 0
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
};

class RankTrainer {
 public:
  // comms null: one process. Builds this rank's chunks on config.device,
  // initialises them (config.seed), makes the optimizers and, with dp > 1,
  // the gradient sync. `trace` (may be null) records the pipeline's events.
  static absl::StatusOr<std::unique_ptr<RankTrainer>> Create(const EngineConfig& config, MeshComms* comms,
                                                             TraceRecorder* trace);
  ~RankTrainer();

  const EngineConfig& config() const { return config_; }
  const std::vector<Model*>& models() const { return models_; }
  Stage& stage() { return *stage_; }
  // Logical parameters of the whole model (tied embedding once); collective over pp.
  absl::StatusOr<int64_t> NumParameters();

  // Zeroes the grads, runs this replica's micro-batches (tokens/targets
  // [mb] (B, T) i32) through the stage's schedule and every gradient
  // collective; returns the loss SUM over the global batch (the same bits
  // on every rank).
  absl::StatusOr<double> ForwardBackward(const std::vector<Tensor>& tokens, const std::vector<Tensor>& targets,
                                         double grad_scale);
  // Global L2 norm of the logical gradient (GlobalGradNorm, summed over tp
  // and pp); above max_norm the grads are scaled by the clip coefficient
  // (pp = 1 on CUDA: inside the next OptimizerStep's pass).
  absl::StatusOr<double> ClipGradNorm(float max_norm);
  absl::Status OptimizerStep(float lr);
  int64_t optimizer_step() const;

  // Mean validation loss per token over eval_batches micro-batches,
  // computed by dp replica 0 (every rank of it returns it); -1 elsewhere.
  absl::StatusOr<double> ValidationLoss(const Sampler& sampler);

  // The slices this rank writes (host tensors), see the file comment.
  std::vector<TensorShard> CheckpointShards();
  // Reads this rank's params through `read` and, unless the file is
  // weights-only (no "sampler"/"optimizer_step" attributes), its Adam
  // moments and step.
  absl::StatusOr<LoadedCheckpoint> Load(const ShardReader& read);
  // Online distillation: reads the teacher's params (params/*, any layout's
  // checkpoint) into this rank's teacher chunks. FailedPrecondition without a teacher.
  absl::Status LoadTeacher(const ShardReader& read);
  // The last ForwardBackward's distillation sums over the global batch
  // (loss, KL, CE; the same on every rank); zeros when training.
  DistillLossSums distill_sums() const { return distill_sums_; }
  // Offline distillation: the teacher's top-k rows of each of this
  // replica's micro-batches for the next ForwardBackward.
  void SetTeacherTopK(std::vector<TeacherTopK> topk) { stage_->SetTeacherTopK(std::move(topk)); }

  // How the tp group's collectives travel, for the launcher's log line
  // ("mpi (host tensors)", "nccl (2 ranks on 2 devices)", "host-staged
  // (...)"); empty when tp = 1.
  const std::string& tp_collectives() const { return tp_collectives_; }

  // Buckets started during the backward in the last step / all buckets.
  int buckets_started_early() const { return sync_ ? sync_->started_early() : 0; }
  int num_buckets() const { return sync_ ? sync_->num_buckets() : 0; }

 private:
  RankTrainer() = default;
  absl::Status MakeTpCollectives(TensorParallel* tp);
  void MakeOptimizerState();
  absl::Status MakeGradSync();
  // Adam state index of chunk c's param i on this rank (-1: another rank owns it).
  int StateIndex(int c, int i) const { return state_index_[c][i]; }
  std::vector<Param>& OptParams(int c) { return zero_ ? owned_[c] : models_[c]->params(); }

  EngineConfig config_;
  MeshComms* comms_ = nullptr;
  std::unique_ptr<Communicator> self_;        // the pipeline group of one process
  int dp_ = 1, dp_rank_ = 0, tp_rank_ = 0;
  std::unique_ptr<TpCollectives> tp_coll_;   // tp > 1: over comms_->tp (CPU) or on the device (CUDA)
  std::string tp_collectives_;
  std::unique_ptr<Stage> stage_;
  std::vector<Model*> models_;
  std::vector<AdamWOptimizer> opts_;          // [chunk]
  bool zero_ = false;
  std::vector<std::vector<Param>> owned_;     // ZeRO-1: [chunk] params this rank updates (shared handles)
  std::vector<std::vector<int>> owner_;       // [chunk][param] dp rank that updates it
  std::vector<std::vector<int>> state_index_; // [chunk][param]
  std::unique_ptr<GradSync> sync_;            // CPU, dp > 1
  std::unique_ptr<Communicator> nccl_dp_;     // CUDA, dp > 1
  DistillLossSums distill_sums_;
  float grad_scale_ = 1.0f;                   // pp = 1 on CUDA: the clip coefficient, applied by the next OptimizerStep
};

}  // namespace baton
