// The planner's memory model: the bytes one rank of a dp × pp × tp layout
// holds at its peak, derived from the model config alone, the way baton
// allocates them (runtime/model.cc, launcher/rank_model.cc): f32 master
// weights and f32 grads (plus a bf16 compute copy under bf16 on CUDA), AdamW
// m and v in f32 for the params this rank owns (all, or under ZeRO-1 every
// dp-th param in flat order), the model's shared activation buffers, and
// per in-flight micro-batch the kept activations of each layer under the
// recompute policy (runtime KeptActivationBytes, the numbers `baton train`
// reports) times the schedule simulator's peak in-flight count. `baton
// plan` ranks layouts with it; tests/launcher/plan_memory_test.cc pins it
// against the bytes a real Model and optimizer allocate. Pure: no MPI, no
// device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/schedule.h"
#include "runtime/model_config.h"
#include "runtime/tensor.h"

namespace baton {

// One candidate layout of a training job: everything `baton plan` varies.
struct PlanLayout {
  int dp = 1, pp = 1, tp = 1;
  int virtual_stages = 1;  // model chunks per stage
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int micro_batch = 1;     // sequences per micro-batch
  int microbatches = 1;    // micro-batches per step per dp replica
  RecomputeConfig recompute;
  int zero = 0;            // 0 = off, 1 = optimizer state sharded over dp
  bool sequence_parallel = false;
  // Layers of each model part, as the job's parallel.layers_per_stage
  // (pp·virtual_stages entries); empty = the engine's balanced split.
  std::vector<int> layers_per_part;

  int gpus() const { return dp * pp * tp; }
  int parts() const { return pp * virtual_stages; }
  ScheduleSpec spec() const { return {schedule, pp, microbatches, virtual_stages}; }
};

// "dp=2 pp=4 tp=8 v=2 interleaved mb=1x16 recompute=selective zero=1"
// (then " split=1+3" when the layout has an explicit split)
std::string ToString(const PlanLayout& layout);
const char* RecomputeName(const RecomputeConfig& rc);  // "none", "full", "selective", "every_2"

// Where the job runs: decides the dtypes (CPU: f32 everywhere; CUDA: f32
// master weights and grads, `compute` activations, f32 statistics, no
// stored attention probabilities).
struct MemoryTarget {
  Device device = Device::kCuda;
  DType compute = DType::kBF16;  // CUDA only; CPU is f32
  // Per-GPU bytes baton does not account for itself: CUDA context, cuBLAS
  // and cuDNN workspaces, NCCL buffers, caching-allocator slack.
  int64_t runtime_reserve = 0;
};

// Model parts 0..parts()-1 of `layout` (layers [first, last), embedding on
// part 0, head on the last): the engine's split, engine/stage_split.h
// SplitLayers with the layout's layers_per_part exactly as the engine gets
// parallel.layers_per_stage (launcher/train.cc EngineConfigOf), called
// rather than copied so the two cannot drift (plan_memory_test checks them
// against each other). Every pricing function takes its parts from here;
// the layout must pass CheckSplit.
struct PartLayers {
  int first = 0, last = 0;
  bool embedding = false, head = false;
};
std::vector<PartLayers> SplitParts(const ModelConfig& model, const PlanLayout& layout, int64_t seq);

// Why the engine would refuse `layout`'s explicit split for this model (an
// entry per model part, each >= 1, summing to model.layers: the rule of
// launcher/config_validate.cc ValidateMesh), or OK (also when it has none).
absl::Status CheckSplit(const ModelConfig& model, const PlanLayout& layout);

// The tensors of one part as its Model allocates them (tp slices, in the
// order of Model::params): element counts.
std::vector<int64_t> PartParamElements(const ModelConfig& model, const PartLayers& part, bool tied_copy, int tp);

struct MemoryBreakdown {
  int stage = 0;           // the pipeline stage this is for (the worst one)
  int in_flight = 0;       // peak (micro-batch, chunk) units alive on it
  int64_t weights = 0;     // master values (+ compute copy)
  int64_t grads = 0;
  int64_t optimizer = 0;   // AdamW m and v this rank owns
  int64_t activations = 0; // shared buffers + in-flight micro-batches
  int64_t comm = 0;        // dp bucket buffers, pipeline message buffers, runtime reserve
  int64_t params = 0;      // elements held (for the report)
  int64_t total() const { return weights + grads + optimizer + activations + comm; }
};

// Activation bytes of one chunk: its buffers shared by every micro-batch
// (residual stream, recompute target set, scratch, head logits) and what
// one in-flight micro-batch keeps (`per_microbatch`). `whole` means the
// pp = 1 path (Model::ForwardBackward) rather than pipeline slots.
struct ChunkActivations {
  int64_t shared = 0;
  int64_t per_microbatch = 0;
};
ChunkActivations ChunkActivationBytes(const ModelConfig& model, const PartLayers& part, const PlanLayout& layout,
                                      int64_t seq, const MemoryTarget& target, bool whole);

// Zero-bubble schedules: bytes one micro-batch's deferred weight gradients
// hold between its I and its W (copies of every linear layer's input and
// output gradient, runtime/transformer_layer.cc LinearBackwardMaybeDeferred).
int64_t DeferredWeightGradBytes(const ModelConfig& model, const PartLayers& part, const PlanLayout& layout,
                                int64_t seq, const MemoryTarget& target);

// Peak bytes per rank of every pipeline stage; `peak_in_flight` per stage
// from the simulator (parallel/schedule_simulate.h), in (micro-batch,
// chunk) units; `pending_weight` (zero-bubble schedules; empty = none) how
// many of them wait between I and W at the peak. One breakdown per stage.
absl::StatusOr<std::vector<MemoryBreakdown>> PredictStageMemory(const ModelConfig& model, const PlanLayout& layout,
                                                                int64_t seq, const MemoryTarget& target,
                                                                const std::vector<int>& peak_in_flight,
                                                                const std::vector<int>& pending_weight = {});

// The largest stage of PredictStageMemory.
absl::StatusOr<MemoryBreakdown> PredictMemory(const ModelConfig& model, const PlanLayout& layout, int64_t seq,
                                              const MemoryTarget& target, const std::vector<int>& peak_in_flight,
                                              const std::vector<int>& pending_weight = {});

// "12.4 GB" (decimal GB for GPU sizes as vendors state them; KB/MB below).
std::string FormatBytes(int64_t bytes);

}  // namespace baton
