// The planner's time model: the seconds one training step of a layout
// takes on a HardwareProfile. Per (micro-batch, chunk) it prices the
// forward and backward of the slowest model part from its ops (GEMMs by
// shape class, causal attention, memory-bound pointwise passes, the
// recompute policy's extra forward work, tensor-parallel all-reduces over
// the link the tp group sits on), feeds those costs and the pipeline
// message latency to the schedule simulator (parallel/schedule_simulate.h)
// for the pipeline's makespan and bubble, then adds what follows the
// pipeline: the dp gradient all-reduce (not overlapped on CUDA: one NCCL
// call after the backward, as baton does it), ZeRO-1's parameter
// broadcast, the tied-embedding sum, AdamW and a fixed overhead. Pure.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "launcher/plan_memory.h"
#include "launcher/plan_profile.h"
#include "parallel/schedule_simulate.h"
#include "runtime/model_config.h"

namespace baton {

struct StepPrediction {
  // Per (micro-batch, chunk) of the slowest part, seconds.
  double forward = 0, backward = 0, backward_input = 0, backward_weight = 0;
  double tp_comm = 0;    // of forward + backward, the tp collectives' share
  double p2p = 0;        // one pipeline message
  double pipeline = 0;   // the simulator's makespan
  double bubble = 0;     // its idle fraction
  double dp_sync = 0, optimizer = 0, overhead = 0;
  double step = 0;       // seconds per optimizer step
  double tokens_per_s = 0;
  double mfu = 0;            // against the profile's measured GEMM peak
  double mfu_datasheet = 0;  // against the vendor figure (0 when unknown)
  SimResult sim;             // the pipeline as simulated (for --explain)
};

// Model FLOPs per trained token, as train_bench and docs/performance.md
// count them: 6·(non-embedding params, the lm head's matmul included) +
// 12·layers·dim·seq (attention scores at full, not causal, cost); never
// the recompute. Megatron's MFU formula counts the same terms.
double ModelFlopsPerToken(const ModelConfig& model, int64_t seq);

// Zero-bubble schedules: micro-batches per stage between I and W at the
// peak (in flight minus stashed, at least 1); empty for other schedules.
std::vector<int> PendingWeight(const PlanLayout& layout, const SimResult& sim);

absl::StatusOr<StepPrediction> PredictStep(const ModelConfig& model, const PlanLayout& layout, int64_t seq,
                                           const HardwareProfile& hw, int gpus_per_node);

}  // namespace baton
