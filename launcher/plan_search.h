// `baton plan`'s search: every dp × pp × tp mesh of the GPU count, every
// schedule baton runs (1f1b, interleaved with 2 or 4 chunks, zb-h1),
// micro-batch size, recompute policy and ZeRO stage, for the job's model,
// sequence length and global batch. Each layout is either rejected with one
// reason a person can act on ("tp=16 crosses nodes (gpus-per-node 8)",
// "does not fit: 97.0 GB > 85.5 GB", "heads 12 not divisible by tp 8") or
// priced by the memory and time models; the ones that fit are ranked by
// predicted step time. A job with an explicit split (parallel.layers_per_stage)
// is priced with it on every layout of as many model parts (pp·virtual_stages)
// as it has entries; the engine refuses the others with that split, so the
// search skips them and says so. Pure: tests run it on any model without a
// device.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "launcher/plan_memory.h"
#include "launcher/plan_profile.h"
#include "launcher/plan_time.h"
#include "runtime/model_config.h"

namespace baton {

struct PlanRequest {
  ModelConfig model;
  int64_t seq = 2048;
  int global_batch = 8;     // sequences per optimizer step (train.global_batch_size)
  int gpus = 1;
  int gpus_per_node = 8;
  HardwareProfile hw;
  int max_micro_batch = 16;
  std::vector<int> layers_per_part;  // the job's parallel.layers_per_stage; empty = balanced
};

struct PlanCandidate {
  PlanLayout layout;
  StepPrediction time;
  MemoryBreakdown memory;  // the fullest stage
};

struct PlanRejection {
  PlanLayout layout;
  std::string why;
  int64_t bytes = 0;  // predicted peak when the reason is "does not fit"
  bool split = false; // the job's explicit split has not this layout's pp·v parts: skipped
};

struct PlanResult {
  std::vector<PlanCandidate> fits;       // fastest first
  std::vector<PlanRejection> rejected;   // mesh-level reasons once per mesh; others per layout
  int64_t capacity = 0;                  // bytes per device the layouts must fit in
};

// Why a mesh cannot run this model at all, or "" when it can.
std::string MeshProblem(const PlanRequest& request, int dp, int pp, int tp);

// Prices one layout with its own layers_per_part (rejection reason in `why` when it does not fit or
// cannot run; the candidate is filled either way when it could be priced).
absl::StatusOr<PlanCandidate> EvaluateLayout(const PlanRequest& request, const PlanLayout& layout, std::string* why);

// Refuses (one line, as the engine would) a request whose explicit split
// fits no layout: an entry < 1, or a sum other than model.layers.
absl::StatusOr<PlanResult> SearchLayouts(const PlanRequest& request);

}  // namespace baton
