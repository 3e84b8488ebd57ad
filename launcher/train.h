// `baton train`: the training job driver. Owns the loop that ties the
// pieces together — dataset and sampler, model, optimizer, checkpoints,
// metrics and progress — and nothing else: every piece of math lives below
// in runtime/, every file format in checkpoints/.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/engine_config.h"
#include "launcher/config.h"
#include "parallel/mpi_communicator.h"

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
absl::Status Train(const JobConfig& config, TrainSummary* summary, MeshComms* comms = nullptr);

// The engine's view of the job on `device` (train.precision picks the
// compute dtype there).
EngineConfig EngineConfigOf(const JobConfig& config, Device device);

// argv after "train": --config FILE [--set K=V [K=V ...]]...
int RunTrainCommand(const std::vector<std::string>& args);

}  // namespace baton
