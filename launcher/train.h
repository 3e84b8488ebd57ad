// `baton train`: the training job driver. Owns the loop that ties the
// pieces together — dataset and sampler, model, optimizer, checkpoints,
// metrics and progress — and nothing else: every piece of math lives below
// in runtime/, every file format in checkpoints/.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoints/checkpoint.h"
#include "engine/engine_config.h"
#include "launcher/config.h"
#include "nlohmann/json.hpp"
#include "parallel/mpi_communicator.h"
#include "runtime/distill_offline.h"

namespace baton {

struct TrainSummary {
  int64_t first_step = 0, last_step = 0;  // 1-based steps run by this process
  double first_loss = 0, last_loss = 0;
  double last_val_loss = -1;              // -1: no validation ran
  double tokens_per_s = 0;                // over the steps run, excluding the first
  double mfu = 0;                         // tokens_per_s · (6N + 12·L·d·T) / output.peak_tflops per GPU (docs/performance.md)
  int64_t peak_allocated = 0, peak_reserved = 0;  // this rank's GPU memory high-water marks (bytes; 0 on the CPU)
  double seconds = 0;
  std::string checkpoint;                 // last checkpoint written ("" if none)
  int dp_buckets = 0;                     // data-parallel gradient buckets (CPU, dp > 1)
  int dp_buckets_early = 0;               // of those, started during the last step's backward
};

// Runs the job. `comms` null: one process, no communication; otherwise the
// communicators of this rank's mesh groups (world, dp, pp, tp). Data
// parallelism splits each global batch over dp ranks and sums gradients in
// rank order, so every rank applies the same update. Only world rank 0
// prints, writes metrics and checkpoints (replicated weights: one writer).
// InvalidArgument/NotFound/FailedPrecondition: bad input (exit 2); other
// errors: runtime failure (exit 1).
// What `baton distill` (launcher/distill.cc) adds to this driver; training passes none.
struct DriverExtras {
  TeacherLayout teacher;           // enabled: online distillation (the engine's teacher)
  std::string teacher_checkpoint;  // read into the teacher's chunks, every rank its slices
  // A fresh start (nothing resumed): the student's first params ("params/*")
  // instead of the seeded init. Null: the seeded init.
  std::function<absl::StatusOr<CheckpointData>()> student_init;
  // World rank 0, at each validation, given the checkpoint just written
  // there (validation steps then always write one when checkpoint.dir is
  // set): more figures for the metrics line and the log. Null: none.
  std::function<absl::StatusOr<nlohmann::json>(const std::string& checkpoint)> eval_figures;
  // Offline (teacher.offline): the teacher's top-k rows of training samples `ids`.
  std::function<absl::StatusOr<TeacherTopK>(absl::Span<const int64_t> ids)> teacher_topk;
};

absl::Status Train(const JobConfig& config, TrainSummary* summary, MeshComms* comms = nullptr,
                   const DriverExtras* extras = nullptr);

// The engine's view of the job on `device` (train.precision picks the
// compute dtype there).
EngineConfig EngineConfigOf(const JobConfig& config, Device device);

// argv after "train": --config FILE [--set K=V [K=V ...]]...
int RunTrainCommand(const std::vector<std::string>& args);

}  // namespace baton
