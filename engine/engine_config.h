// What the engine needs to know of a job, and nothing else: the model, the
// mesh and pipeline layout, the shape of a step and the optimizer. The
// launcher fills it from the job's TOML (launcher/train.cc: EngineConfigOf);
// the engine takes it by value and never sees files, flags or the
// environment. Keeping it narrow is what lets inference and distillation
// drive the same engine with their own configs.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/schedule.h"
#include "runtime/distill_loss.h"
#include "runtime/model_config.h"
#include "runtime/optimizer_config.h"
#include "runtime/tensor.h"

namespace baton {

// The dp × pp × tp mesh as the engine uses it.
struct MeshLayout {
  int dp = 1, pp = 1, tp = 1;
  bool sequence_parallel = false;  // with tp > 1: norms and residuals sharded along the tokens
  int zero = 0;                    // 1: AdamW state sharded over dp (ZeRO-1)
  double bucket_mb = 25;           // dp gradient bucket size (MiB); 0 = one bucket
};

// How the model is cut into pipeline parts and scheduled (pp > 1).
struct PipelineLayout {
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int virtual_stages = 1;              // chunks per stage
  std::vector<int> layers_per_part;    // pp·virtual_stages entries; empty = balanced by cost
};

// Online distillation (engine/stage_teacher.h): a forward-only teacher cut
// into the same pipeline parts as the student; the student's head loss
// becomes DistillLoss against its logits. Off: plain training.
struct TeacherLayout {
  bool enabled = false;
  bool offline = false;              // the teacher's stored top-k logits (Stage::SetTeacherTopK), no teacher model
  ModelConfig model;                 // the teacher's; one vocabulary with the student
  DistillLossOptions loss;           // alpha, temperature
  std::vector<int> layers_per_part;  // the teacher's cut; empty = balanced by cost
};

struct EngineConfig {
  ModelConfig model;
  RecomputeConfig recompute;
  OptimizerConfig optimizer;
  MeshLayout mesh;
  PipelineLayout pipeline;
  int micro_batch_size = 1;  // sequences per micro-batch
  int seq_len = 1;
  int microbatches = 1;      // per step per dp replica
  int eval_batches = 1;      // micro-batches per validation pass
  int64_t seed = 0;          // weight init
  Device device = Device::kCpu;
  DType compute = DType::kF32;  // activations: kBF16 (mixed precision on CUDA) or kF32
  TeacherLayout teacher;        // distillation; disabled for training

  // The step's schedule: parallel.schedule over pp stages, or for pp = 1 a
  // one-stage 1F1B (F0 B0 F1 B1 ...: one micro-batch in flight, in order).
  ScheduleSpec TrainSchedule() const;
  // Validation: forward only, eval_batches micro-batches, the same layout.
  ScheduleSpec EvalSchedule(int batches) const;
};

}  // namespace baton
