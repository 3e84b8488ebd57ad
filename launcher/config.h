// The job config: one TOML file (+ `--set section.key=value` overrides)
// turned into plain aggregates, one per concern, validated before any work.
// Only launcher/ reads configs; the structs below are passed down by value
// (runtime/ gets ModelConfig, RecomputeConfig, OptimizerConfig; the
// engine an EngineConfig that launcher/train.cc fills from the rest). Invariant: a JobConfig
// that LoadJobConfig returns passed every check that needs no world size,
// and its source_text parses back to the same JobConfig. Every error is
// one line (absl::InvalidArgumentError) naming the key and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/schedule.h"
#include "runtime/model_config.h"
#include "runtime/optimizer_config.h"

namespace baton {

// [data]
struct DataConfig {
  std::string path;               // dataset prefix (PREFIX.bin + PREFIX.idx); "" = none given
  double val_fraction = 0.01;     // fraction of documents held out for validation, in [0, 1); 0 = no val split
  std::vector<std::string> corpus;  // files/folders tokenized into `path` when it does not exist yet; empty = off
  std::string tokenizer = "byte";   // "byte" (256 bytes + BOS + EOS) or a tokenizer.json; used with corpus and by export
  bool operator==(const DataConfig&) const = default;
};

// [train] (the optimizer keys lr, min_lr, warmup_steps, decay, weight_decay,
// beta1, beta2, eps, grad_clip live in [train] too, see OptimizerConfig).
struct TrainConfig {
  int64_t steps = 100;            // optimizer steps; >= 1
  int64_t seed = 1234;            // seeds init, data order and dropout-free RNG; >= 0
  int micro_batch_size = 4;       // sequences per micro-batch per dp replica; >= 1
  int global_batch_size = 8;      // sequences per optimizer step, all replicas; multiple of micro_batch_size·dp
  int seq_len = 64;               // tokens per sequence; >= 1
  int64_t eval_every = 0;         // steps between validation passes; 0 = off
  int eval_batches = 4;           // micro-batches per validation pass; >= 1
  int64_t log_every = 1;          // steps between metric lines; >= 1
  std::string device = "auto";     // "auto" (cuda when a GPU is visible, else cpu), "cpu" or "cuda"
  bool share_gpus = false;         // several ranks per GPU on purpose (local rank mod GPUs); else refused
  std::string precision = "bf16";  // compute dtype on cuda: "bf16" or "fp32" (fp32 master weights either way); cpu is fp32
  int64_t exit_interval = 0;      // stop this run after so many steps (then resume); 0 = off, run to `steps`
  OptimizerConfig optimizer;
};

// parallel.schedule is a ScheduleKind (parallel/schedule.h): gpipe, 1f1b,
// interleaved or zb-h1 (zb-v is not offered yet).
enum class P2pTransport { kMpi, kUcx, kNccl };  // "nccl" parses, and validation refuses it (not wired yet)

const char* P2pTransportName(P2pTransport t);  // "mpi", "ucx", "nccl"

// [parallel] — dp·pp·tp must equal the world size (ValidateMesh).
struct ParallelConfig {
  int dp = 1;                     // data-parallel replicas; 1 = off
  int pp = 1;                     // pipeline stages; 1 = no pipeline
  int tp = 1;                     // tensor-parallel ranks per layer; 1 = off
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int virtual_stages = 1;         // model chunks per pipeline stage; >= 2 with "interleaved", else must be 1
  int microbatches = 0;           // per step per replica; 0 = derived: global_batch_size / (micro_batch_size·dp)
  P2pTransport p2p = P2pTransport::kMpi;  // transport for activations between stages
  int zero = 0;                   // ZeRO stage: 0 = off, 1 = optimizer state sharded over dp
  bool sequence_parallel = false; // with tp > 1: norms and residuals sharded along the tokens
  double bucket_mb = 25;          // data-parallel gradient bucket size (MiB); 0 = one bucket
  double timeout_s = 60;          // a collective or pipeline receive that makes no progress this long fails, naming the silent rank; > 0
  std::vector<int> layers_per_stage;  // layers of each model part (pp·virtual_stages entries); empty = balanced by cost
  bool operator==(const ParallelConfig&) const = default;
};

// [checkpoint]
struct CheckpointConfig {
  std::string dir;                // where step_NNNNNNNN.h5 files go; "" = checkpointing off
  int64_t every = 0;              // steps between checkpoints; 0 = only one, at the end of training
  std::string resume = "auto";    // "auto" = newest in dir if any; "none" = fresh start; else a checkpoint file
  int keep = 0;                   // newest checkpoints kept on disk; 0 = keep all
  bool operator==(const CheckpointConfig&) const = default;
};

enum class ProgressMode { kAuto, kBar, kLines };
const char* ProgressModeName(ProgressMode m);  // "auto", "bar", "lines"

// [output]
struct OutputConfig {
  std::string metrics;            // JSONL file, one object per logged step; "" = off
  std::string trace;              // Chrome trace JSON of the schedule timeline; "" = off
  ProgressMode progress = ProgressMode::kAuto;  // auto = a bar on a terminal, lines otherwise
  double peak_tflops = 845;       // bf16 GEMM peak (TFLOP/s) MFU is reported against: train_bench measured H200, docs/performance.md; > 0
  bool operator==(const OutputConfig&) const = default;
};

// [teacher] (baton distill): the model the student learns from.
struct TeacherConfig {
  std::string checkpoint;         // any baton checkpoint (baton import --hf makes one from HF); "" = none
  bool operator==(const TeacherConfig&) const = default;
};

enum class DistillMode { kOnline, kOffline };
const char* DistillModeName(DistillMode m);  // "online", "offline"

// [distill] loss = alpha·T²·KL(teacher/T ‖ student/T) + (1 − alpha)·CE (runtime/distill_loss.h).
struct DistillConfig {
  double alpha = 0.5;             // weight of the KL term, in [0, 1]; 0 = plain cross-entropy
  double temperature = 1.0;       // softens both distributions inside the KL; > 0; 1 = off
  DistillMode mode = DistillMode::kOnline;  // online: teacher runs every step; offline: its stored top-k logits
  int topk = 64;                  // offline: teacher logits kept per token; >= 1 (<= model.vocab_size in offline mode)
  std::string logits_path;        // offline: directory of the teacher's top-k logits (--dump-teacher writes it); "" = none
  bool operator==(const DistillConfig&) const = default;
};

enum class StudentInit { kRandom, kTeacherLayers };
const char* StudentInitName(StudentInit i);  // "random", "teacher-layers"

// [student] (baton distill): how the student ([model]) starts.
struct StudentConfig {
  StudentInit init = StudentInit::kRandom;  // teacher-layers: the teacher's embedding, head and some blocks
  std::vector<int> layers_from;   // teacher-layers: teacher block of each student block; empty = evenly spaced
  bool operator==(const StudentConfig&) const = default;
};

struct JobConfig {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  ParallelConfig parallel;
  RecomputeConfig recompute;
  CheckpointConfig checkpoint;
  OutputConfig output;
  TeacherConfig teacher;
  DistillConfig distill;
  StudentConfig student;
  // The effective config (file + overrides + defaults, every key) as TOML;
  // written into metrics manifests and checkpoints. Parses back to this config.
  std::string source_text;

  // Micro-batches per step per dp replica: parallel.microbatches, or derived.
  int microbatches() const;
};

// Reads `path` and applies `overrides` ("section.key=value", from --set).
absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                        const std::vector<std::string>& overrides);

// Same from text; `source_name` names the text in error messages.
absl::StatusOr<JobConfig> ParseJobConfig(std::string_view toml_text, std::string_view source_name,
                                         const std::vector<std::string>& overrides);

// Every check that needs no world size (types are checked while parsing):
// ranges, enums' companions and cross-key consistency, ModelConfig::Validate.
// ParseJobConfig calls it; call it again after changing a config in code.
absl::Status ValidateJobConfig(const JobConfig& config);

// Checks that need the world size: dp·pp·tp == world_size; tp divides
// model.heads, kv_heads, ffn_dim and vocab_size; model.layers >=
// pp·virtual_stages (layers need not divide evenly across stages).
absl::Status ValidateMesh(const JobConfig& config, int world_size);

// The effective config as TOML text, every key present (used for source_text).
std::string JobConfigToToml(const JobConfig& config);

}  // namespace baton
