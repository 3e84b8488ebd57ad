// What `baton train` tells people about its run, kept apart from the driver
// (train.cc) so that the loop there reads as the order of its collective
// steps: the banner before the first step; per step the metrics row and the
// progress line (tokens/s, and on CUDA MFU and the GPU memory high-water
// marks; distillation's kl and ce); the validation row with the job's extra
// figures; checkpoint notes; and the summary's rates, peaks, trace and dp
// buckets. Only world rank 0 writes or prints; every rank keeps the losses
// and timings of its TrainSummary. When each is called stays the driver's
// decision: a step's row goes out before that step's checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/rank_trainer.h"
#include "launcher/config.h"
#include "launcher/metrics.h"
#include "launcher/progress.h"
#include "launcher/train.h"
#include "nlohmann/json.hpp"

namespace baton {

// One optimizer step's figures, as the driver's TrainStep returns them.
struct StepResult {
  double loss = 0, grad_norm = 0;
  double kl = 0, ce = 0;  // distillation: the loss's parts, per token
  float lr = 0;
};

// flops per token as docs/performance.md counts them: 6 per parameter
// besides the input embedding, 12·L·d·T for attention's two T-long products.
double FlopsPerToken(const JobConfig& config, int64_t num_parameters);

// What rank 0 prints before the first step: mesh, pipeline, model, data, activations.
void PrintBanner(const JobConfig& config, MeshComms* comms, RankTrainer& trainer, int64_t num_parameters,
                 const Sampler& sampler);

// DriverExtras::eval_figures: more figures for a validation row, given the
// checkpoint written at that step.
using EvalFigures = std::function<absl::StatusOr<nlohmann::json>(const std::string& checkpoint)>;

// The per-step reporting of one run of the loop, from its first step to Finish.
class StepReport {
 public:
  // `first_step`: the 1-based step the loop starts with (its time pays for
  // allocation and stays out of the rates). `flops_per_token` over the whole
  // job: MFU divides it among the `world` ranks.
  StepReport(const JobConfig& config, int world, bool root, Device device, double flops_per_token, bool distill,
             MetricsWriter& metrics, TrainSummary& summary, int64_t first_step);

  // Step `step` ran in `seconds`: the summary's losses and timed tokens on
  // every rank; on rank 0 the metrics row and the progress line.
  void Step(int64_t step, const StepResult& s, double seconds);
  // Rank 0: the validation row and note, with `figures` (null: none) of
  // the checkpoint in summary.checkpoint.
  absl::Status Validation(int64_t step, double val_loss, const EvalFigures* figures);
  // Rank 0: the note naming the checkpoint just written (summary.checkpoint).
  void Checkpoint(int64_t step);
  // After the loop ended after `last_step`: rank 0 closes the progress
  // display; every rank's summary gets its rates and GPU memory peaks.
  void Finish(int64_t last_step);

 private:
  const JobConfig& config_;
  const bool root_;
  const Device device_;
  const double flops_per_gpu_token_;  // tokens/s counts every replica's tokens
  const bool distill_;
  const int64_t tokens_per_step_;
  MetricsWriter& metrics_;
  TrainSummary& summary_;
  Progress progress_;
  double timed_seconds_ = 0;
  int64_t timed_tokens_ = 0;
};

// After the loop: the trace file (collective over the world: every rank
// calls it) and the dp bucket report.
absl::Status ReportAfterLoop(const JobConfig& config, MeshComms* comms, TraceRecorder* trace,
                             const RankTrainer& trainer, bool root, TrainSummary& summary);

}  // namespace baton
