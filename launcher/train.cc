// The training loop (see train.h). One step: sample the global batch, run
// this replica's micro-batches through the rank's model share (RankTrainer:
// forward + backward with grads scaled by 1/tokens of the global batch, so
// the loss is the mean over every token of the step, then the dp/tp/pp
// gradient collectives), clip, schedule the learning rate, AdamW; then
// validation, the step's metrics row, checkpoint. Checkpoints are written by
// every rank at once, each its own slices (parallel HDF5 under MPI): one
// logical file that any layout loads. What is reported (rows, progress,
// MFU, memory, summary) lives in train_report.cc; when, stays here.
#include "launcher/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include <mpi.h>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/checkpoint_dir.h"
#include "checkpoints/dist_checkpoint.h"
#include "kernels/gpu.h"
#include "launcher/memory_fit.h"
#include "launcher/metrics.h"
#include "engine/rank_trainer.h"
#include "launcher/preflight.h"
#include "launcher/rank_env.h"
#include "launcher/signals.h"
#include "launcher/train_report.h"
#include "nlohmann/json.hpp"
#include "runtime/bpe_tokenizer.h"
#include "runtime/corpus.h"
#include "runtime/indexed_dataset.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/rng.h"
#include "runtime/sampler.h"
#include "runtime/step_batches.h"

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Checkpoint attributes besides the step.
std::map<std::string, std::string> CheckpointAttrs(const JobConfig& config, const Sampler& sampler,
                                                   int64_t optimizer_step) {
  SamplerState s = sampler.state();
  return {{"config", config.source_text},
          {"sampler", nlohmann::json{{"epoch", s.epoch}, {"position", s.position}}.dump()},
          {"optimizer_step", std::to_string(optimizer_step)},
          {"git_revision", GitRevision()}};
}

// Writes one checkpoint: collectively (every rank its slices) under MPI,
// or the single-process writer. World rank 0 then commits `latest` and prunes.
absl::Status SaveCheckpoint(const JobConfig& config, int64_t step, const std::vector<TensorShard>& shards,
                            const std::map<std::string, std::string>& attrs, MPI_Comm world, bool root,
                            std::string* path_out) {
  const bool mpi = world != MPI_COMM_NULL;
  const std::string path = CheckpointPath(config.checkpoint.dir, step);
  if (root) {
    std::error_code ec;
    std::filesystem::create_directories(config.checkpoint.dir, ec);
  }
  if (mpi) {
    BATON_RETURN_IF_ERROR(MPI_Barrier(world) == MPI_SUCCESS  // the directory exists
                              ? absl::OkStatus()
                              : absl::InternalError("MPI_Barrier before the checkpoint failed"));
    BATON_RETURN_IF_ERROR(WriteShardedCheckpoint(world, path, step, shards, attrs));
  } else {
    CheckpointData data;
    data.step = step;
    data.attrs = attrs;
    for (const TensorShard& s : shards) data.tensors.push_back({s.name, s.local});
    BATON_RETURN_IF_ERROR(WriteCheckpoint(path, data));
  }
  if (root) {
    BATON_RETURN_IF_ERROR(CommitLatest(config.checkpoint.dir, path));
    BATON_RETURN_IF_ERROR(Prune(config.checkpoint.dir, config.checkpoint.keep));
  }
  *path_out = path;
  return absl::OkStatus();
}

// Reads `shards` from `path`: collectively under MPI, else through the
// single-process reader (one process holds whole tensors).
ShardReader CheckpointReader(const std::string& path, MPI_Comm world) {
  return [path, world](std::vector<TensorShard>& shards, int64_t* step,
                       std::map<std::string, std::string>* attrs) -> absl::Status {
    if (world != MPI_COMM_NULL) return ReadShardedCheckpoint(world, path, shards, step, attrs);
    BATON_ASSIGN_OR_RETURN(CheckpointData data, ReadCheckpoint(path));
    for (TensorShard& s : shards) BATON_RETURN_IF_ERROR(CopyInto(data, s.name, s.local));
    *step = data.step;
    *attrs = data.attrs;
    return absl::OkStatus();
  };
}

// Which checkpoint to resume from, if any.
absl::StatusOr<std::optional<std::string>> ResumePath(const CheckpointConfig& c) {
  if (c.resume == "none") return std::optional<std::string>();
  if (c.resume == "auto") {
    if (c.dir.empty() || !std::filesystem::exists(c.dir)) return std::optional<std::string>();
    return FindLatest(c.dir);
  }
  if (!std::filesystem::exists(c.resume)) {
    return absl::NotFoundError(absl::StrCat("checkpoint.resume: ", c.resume, ": no such file"));
  }
  return std::optional<std::string>(c.resume);
}

// train.device: auto = the GPU when one is visible. A rank picks GPU
// (local rank mod count), from Open MPI's or Slurm's local rank.
absl::StatusOr<Device> ChooseDevice(const TrainConfig& tc) {
  const int gpus = CudaDeviceCount();
  if (tc.device == "cpu" || (tc.device == "auto" && gpus == 0)) return Device::kCpu;
  if (gpus == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("train.device=cuda but this rank sees no GPU (", CudaDeviceSummary(), ")"));
  }
  BATON_ASSIGN_OR_RETURN(const int gpu, GpuOfThisRank(ProcessEnv(), gpus, tc.share_gpus));  // local rank, checked
  BATON_RETURN_IF_ERROR(SelectCudaDevice(gpu));
  return Device::kCuda;
}

// Every rank must run the same job: compare a hash of the effective config.
absl::Status CheckSameConfig(const JobConfig& config, Communicator& world) {
  const uint64_t h = Fnv1a64(config.source_text);
  Tensor mine = Tensor::Empty({2}, DType::kI32);
  mine.data<int32_t>()[0] = static_cast<int32_t>(h & 0xffffffffu);
  mine.data<int32_t>()[1] = static_cast<int32_t>(h >> 32);
  Tensor all = Tensor::Empty({2 * world.size()}, DType::kI32);
  BATON_RETURN_IF_ERROR(world.AllGather(mine, all));
  const int32_t* a = all.data<int32_t>();
  for (int r = 1; r < world.size(); ++r) {
    if (a[2 * r] != a[0] || a[2 * r + 1] != a[1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", r, " holds a different config than rank 0 (check --config/--set on every rank)"));
    }
  }
  return absl::OkStatus();
}

// Tokenizes data.corpus on first use (rank 0 writes, the others wait), then
// opens the dataset and its sampler.
absl::StatusOr<Sampler> PrepareData(const JobConfig& config, MeshComms* comms, bool root,
                                    std::optional<IndexedDataset>* dataset) {
  const TrainConfig& tc = config.train;
  if (!config.data.corpus.empty() && !std::filesystem::exists(config.data.path + ".idx")) {
    if (root) {
      BATON_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(config.data.tokenizer));
      if (tokenizer->vocab_size() > config.model.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("data.tokenizer has ", tokenizer->vocab_size(),
                                                       " ids but model.vocab_size=", config.model.vocab_size));
      }
      std::filesystem::path prefix(config.data.path);
      if (prefix.has_parent_path()) std::filesystem::create_directories(prefix.parent_path());
      BATON_ASSIGN_OR_RETURN(TokenizeStats stats, TokenizeFiles(config.data.corpus, *tokenizer, config.data.path));
      std::printf("tokenized data.corpus: %lld documents, %lld bytes -> %lld tokens in %s.{bin,idx}\n",
                  static_cast<long long>(stats.documents), static_cast<long long>(stats.bytes),
                  static_cast<long long>(stats.tokens), config.data.path.c_str());
    }
    if (comms != nullptr) BATON_RETURN_IF_ERROR(comms->world->Barrier());
  }
  BATON_ASSIGN_OR_RETURN(IndexedDataset opened, IndexedDataset::Open(config.data.path));
  BATON_RETURN_IF_ERROR(opened.CheckTokenIds(config.model.vocab_size));  // not an abort in the loss
  dataset->emplace(std::move(opened));  // the sampler reads it in place from here on
  BATON_ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(**dataset, tc.seq_len, static_cast<uint64_t>(tc.seed),
                                                          config.data.val_fraction));
  if (sampler.num_train_samples() < tc.global_batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.path=", config.data.path, " holds ", sampler.num_train_samples(),
        " training samples of train.seq_len=", tc.seq_len, ", fewer than train.global_batch_size=",
        tc.global_batch_size));
  }
  return sampler;
}

// Loads checkpoint.resume into the trainer and the sampler; returns the
// step to continue from (0 for a fresh start or a weights-only file).
absl::StatusOr<int64_t> Resume(const JobConfig& config, const std::optional<std::string>& resume,
                               MPI_Comm world, bool root, RankTrainer& trainer, Sampler& sampler) {
  if (!resume) return 0;
  BATON_ASSIGN_OR_RETURN(LoadedCheckpoint loaded, trainer.Load(CheckpointReader(*resume, world)));
  if (loaded.weights_only) {
    if (root) {
      std::printf("initialised weights from %s (no optimizer or data state: a new run from step 0)\n",
                  resume->c_str());
    }
    return 0;
  }
  nlohmann::json s = nlohmann::json::parse(loaded.attrs["sampler"], nullptr, /*allow_exceptions=*/false);
  if (!s.is_object() || !s.contains("epoch") || !s.contains("position")) {
    return absl::InvalidArgumentError(absl::StrCat(*resume, ": corrupt sampler state"));
  }
  BATON_RETURN_IF_ERROR(sampler.Restore({s["epoch"].get<int64_t>(), s["position"].get<int64_t>()}));
  if (root) std::printf("resumed from %s at step %lld\n", resume->c_str(), static_cast<long long>(loaded.step));
  return loaded.step;
}

// Everything one run of the loop needs besides the trainer.
struct Run {
  const JobConfig& config;
  MeshComms* comms;
  MPI_Comm world_comm;
  bool root;
  RankTrainer& trainer;
  Sampler& sampler;
  TraceRecorder* trace;
  MetricsWriter& metrics;
  TrainSummary* summary;
  double flops_per_token;  // 6N + 12·L·d·T (docs/performance.md)
  const DriverExtras* extras;  // null: training
  bool distill() const { return extras != nullptr && extras->teacher.enabled; }
};

// One optimizer step: this replica's share of the global batch, forward +
// backward with every gradient collective, clip, AdamW.
// The inputs go up with stream-ordered copies from pinned memory
// (StepBatches): nothing here waits for the GPU before the loss read-back.
absl::StatusOr<StepResult> TrainStep(Run& r, int64_t step, int64_t stop, StepBatches& batches) {
  const TrainConfig& tc = r.config.train;
  const int dp_rank = r.comms != nullptr ? r.comms->dp->rank() : 0;
  const int64_t b = tc.micro_batch_size, tokens_per_step = static_cast<int64_t>(tc.global_batch_size) * tc.seq_len;
  // Every rank draws the same global batch; dp rank r trains on its contiguous share.
  const std::vector<int64_t> ids = r.sampler.NextSampleIds(tc.global_batch_size);
  const int64_t share = tc.global_batch_size / r.config.parallel.dp;
  BATON_RETURN_IF_ERROR(batches.BeginFill());
  std::vector<Tensor>& tokens = batches.host_tokens();
  std::vector<Tensor>& targets = batches.host_targets();
  for (size_t m = 0; m < tokens.size(); ++m) {
    r.sampler.FillTrain(absl::MakeConstSpan(ids).subspan(dp_rank * share + m * b, b), tokens[m], targets[m]);
  }
  BATON_RETURN_IF_ERROR(batches.Upload());
  if (r.extras != nullptr && r.extras->teacher_topk) {  // offline distillation: the stored teacher rows
    std::vector<TeacherTopK> topk;
    for (size_t m = 0; m < tokens.size(); ++m) {
      BATON_ASSIGN_OR_RETURN(TeacherTopK t, r.extras->teacher_topk(absl::MakeConstSpan(ids).subspan(dp_rank * share + m * b, b)));
      topk.push_back(std::move(t));
    }
    r.trainer.SetTeacherTopK(std::move(topk));
  }
  if (r.trace != nullptr && step + 1 == stop) {  // output.trace: the last step's timeline
    BATON_RETURN_IF_ERROR(r.trace->SyncOrigin(*r.comms->world));
  }
  if (r.trace != nullptr) r.trace->Clear();
  const double grad_scale = 1.0 / static_cast<double>(tokens_per_step);
  BATON_ASSIGN_OR_RETURN(const double loss_sum,
                         r.trainer.ForwardBackward(batches.tokens(), batches.targets(), grad_scale));
  StepResult out;
  out.loss = loss_sum / static_cast<double>(tokens_per_step);
  if (!std::isfinite(out.loss)) {
    return absl::InternalError(absl::StrCat("loss is ", out.loss, " at step ", step + 1, " (try a lower train.lr)"));
  }
  if (r.distill()) {
    out.kl = r.trainer.distill_sums().kl / static_cast<double>(tokens_per_step);
    out.ce = r.trainer.distill_sums().ce / static_cast<double>(tokens_per_step);
  }
  BATON_ASSIGN_OR_RETURN(out.grad_norm, r.trainer.ClipGradNorm(tc.optimizer.grad_clip));
  out.lr = LearningRate(tc.optimizer, step, tc.steps);
  BATON_RETURN_IF_ERROR(r.trainer.OptimizerStep(out.lr));
  return out;
}

// The step loop: from `step` to the stop step, with validation, checkpoints,
// metrics and progress on the way. Every rank runs the collectives in the
// same order (step, stop vote, validation, checkpoint); reporting is rank 0's.
absl::Status RunLoop(Run& r, int64_t step) {
  const TrainConfig& tc = r.config.train;
  const int world = r.comms != nullptr ? r.comms->world->size() : 1;
  const Device device = r.trainer.config().device;
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<StepBatches> batches,
                         StepBatches::Create(device, static_cast<int>(r.config.microbatches()), tc.micro_batch_size,
                                             tc.seq_len));
  const int64_t stop = tc.exit_interval > 0 ? std::min(tc.steps, step + tc.exit_interval) : tc.steps;
  StepReport report(r.config, world, r.root, device, r.flops_per_token, r.distill(), r.metrics, *r.summary, step + 1);
  const CheckpointConfig& cc = r.config.checkpoint;
  while (step < stop && !StopAgreed()) {
    const Clock::time_point t0 = Clock::now();
    BATON_ASSIGN_OR_RETURN(const StepResult s, TrainStep(r, step, stop, *batches));
    ++step;
    const double dt = Seconds(t0, Clock::now());
    // A stop signal on any rank: every rank ends after this step, with a checkpoint.
    BATON_ASSIGN_OR_RETURN(const bool stopping, AgreeToStop(r.comms != nullptr ? r.comms->world.get() : nullptr));
    const bool last = step == stop;
    const bool eval = tc.eval_every > 0 && (step % tc.eval_every == 0 || last);
    const bool figures = eval && r.extras != nullptr && r.extras->eval_figures && !cc.dir.empty();
    const bool save = !cc.dir.empty() && ((cc.every > 0 && step % cc.every == 0) || last || stopping || figures);
    double val = -1;
    if (eval) {
      BATON_ASSIGN_OR_RETURN(val, r.trainer.ValidationLoss(r.sampler));
    }
    // The step's row goes out before its checkpoint: a run killed between
    // the two resumes after this step, and its row must be there already.
    report.Step(step, s, dt);
    if (save) {  // collective: every rank writes its slices
      BATON_RETURN_IF_ERROR(SaveCheckpoint(r.config, step, r.trainer.CheckpointShards(),
                                           CheckpointAttrs(r.config, r.sampler, r.trainer.optimizer_step()),
                                           r.world_comm, r.root, &r.summary->checkpoint));
    }
    if (!r.root) continue;  // the rest is reporting
    if (val >= 0) BATON_RETURN_IF_ERROR(report.Validation(step, val, figures ? &r.extras->eval_figures : nullptr));
    if (save) report.Checkpoint(step);
  }
  report.Finish(step);
  return absl::OkStatus();
}

}  // namespace

EngineConfig EngineConfigOf(const JobConfig& config, Device device) {
  const ParallelConfig& p = config.parallel;
  const TrainConfig& tc = config.train;
  EngineConfig e;
  e.model = config.model;
  e.recompute = config.recompute;
  e.optimizer = tc.optimizer;
  e.mesh = {p.dp, p.pp, p.tp, p.sequence_parallel, p.zero, p.bucket_mb};
  e.pipeline = {p.schedule, p.virtual_stages, p.layers_per_stage};
  e.micro_batch_size = tc.micro_batch_size;
  e.seq_len = tc.seq_len;
  e.microbatches = config.microbatches();
  e.eval_batches = tc.eval_batches;
  e.seed = tc.seed;
  e.device = device;
  e.compute = device == Device::kCuda && tc.precision == "bf16" ? DType::kBF16 : DType::kF32;
  return e;
}

namespace {

// This rank's slice of a whole tensor of `data` (a student init held in memory).
absl::Status CopyShard(const CheckpointData& data, TensorShard& shard) {
  if (shard.shard_dim < 0 || shard.local.shape() == shard.full_shape) return CopyInto(data, shard.name, shard.local);
  const Tensor* full = nullptr;
  for (const CheckpointTensor& t : data.tensors) {
    if (t.name == shard.name) full = &t.tensor;
  }
  if (full == nullptr) return absl::NotFoundError(absl::StrCat("student init: no tensor ", shard.name));
  if (full->shape() != shard.full_shape || full->dtype() != shard.local.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat("student init: ", shard.name, " has another shape or dtype"));
  }
  const int d = shard.shard_dim;
  int64_t outer = 1, inner = DTypeSize(full->dtype());
  for (int i = 0; i < d; ++i) outer *= shard.full_shape[i];
  for (size_t i = d + 1; i < shard.full_shape.size(); ++i) inner *= shard.full_shape[i];
  const int64_t n = shard.local.dim(d), f = shard.full_shape[d];
  const char* src = static_cast<const char*>(full->raw());
  char* dst = static_cast<char*>(shard.local.raw());
  for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * n * inner, src + (o * f + shard.offset) * inner, n * inner);
  return absl::OkStatus();
}

// Distillation's start: the teacher's weights (always), and on a fresh
// start the student's first params when the job gives them.
absl::Status PrepareDistill(const DriverExtras& extras, bool resumed, MPI_Comm world, RankTrainer& trainer) {
  if (extras.teacher.enabled && !extras.teacher.offline) {
    BATON_RETURN_IF_ERROR(trainer.LoadTeacher(CheckpointReader(extras.teacher_checkpoint, world)));
  }
  if (resumed || !extras.student_init) return absl::OkStatus();
  BATON_ASSIGN_OR_RETURN(const CheckpointData init, extras.student_init());
  BATON_ASSIGN_OR_RETURN(LoadedCheckpoint loaded,
                         trainer.Load([&init](std::vector<TensorShard>& shards, int64_t* step,
                                              std::map<std::string, std::string>* attrs) -> absl::Status {
                           for (TensorShard& sh : shards) BATON_RETURN_IF_ERROR(CopyShard(init, sh));
                           *step = 0;
                           attrs->clear();  // weights only: the optimizer starts fresh
                           return absl::OkStatus();
                         }));
  if (!loaded.weights_only) return absl::InternalError("student init came with optimizer state");
  return absl::OkStatus();
}

}  // namespace

absl::Status Train(const JobConfig& config, TrainSummary* summary, MeshComms* comms, const DriverExtras* extras) {
  const Clock::time_point start = Clock::now();
  // ---- set-up: the mesh, the same config everywhere, the device
  const int world = comms != nullptr ? comms->world->size() : 1;
  const int world_rank = comms != nullptr ? comms->world->rank() : 0;
  const bool root = world_rank == 0;
  const MPI_Comm world_comm = comms != nullptr ? comms->world->comm() : MPI_COMM_NULL;  // checkpoint I/O
  BATON_RETURN_IF_ERROR(ValidateMesh(config, world));
  if (comms != nullptr) BATON_RETURN_IF_ERROR(CheckSameConfig(config, *comms->world));
  BATON_RETURN_IF_ERROR(CheckOutputsWritable(config, world_rank));  // before any work, not at the first checkpoint
  // ---- data
  std::optional<IndexedDataset> dataset;
  BATON_ASSIGN_OR_RETURN(Sampler sampler, PrepareData(config, comms, root, &dataset));
  // The checkpoint folder only once the inputs are known good: made, and stale temporaries removed.
  if (root && !config.checkpoint.dir.empty()) BATON_RETURN_IF_ERROR(OpenCheckpointDir(config.checkpoint.dir));
  if (comms != nullptr) BATON_RETURN_IF_ERROR(comms->world->Barrier());
  // ---- this rank's share of the model, and its optimizer state
  BATON_ASSIGN_OR_RETURN(const Device device, ChooseDevice(config.train));
  // Refused here, from the memory model, rather than by bad_alloc mid-step.
  BATON_RETURN_IF_ERROR(CheckJobFitsMemory(config, device, comms != nullptr ? comms->world.get() : nullptr));
  std::unique_ptr<TraceRecorder> trace;
  if (config.parallel.pp > 1 && !config.output.trace.empty()) {
    const ParallelConfig& p = config.parallel;
    BATON_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({p.dp, p.pp, p.tp}, world, world_rank));
    trace = std::make_unique<TraceRecorder>(world_rank, TraceRowName(mesh));
  }
  EngineConfig engine = EngineConfigOf(config, device);
  if (extras != nullptr) engine.teacher = extras->teacher;
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<RankTrainer> trainer, RankTrainer::Create(engine, comms, trace.get()));
  BATON_ASSIGN_OR_RETURN(const int64_t num_parameters, trainer->NumParameters());
  if (root && !trainer->tp_collectives().empty()) std::printf("tp collectives: %s\n", trainer->tp_collectives().c_str());
  // ---- resume, manifest, banner
  BATON_ASSIGN_OR_RETURN(std::optional<std::string> resume, ResumePath(config.checkpoint));
  BATON_ASSIGN_OR_RETURN(const int64_t step, Resume(config, resume, world_comm, root, *trainer, sampler));
  if (extras != nullptr) BATON_RETURN_IF_ERROR(PrepareDistill(*extras, resume.has_value(), world_comm, *trainer));
  if (root && trainer->stage().teacher() != nullptr) {
    std::printf("%s\n", trainer->stage().teacher()->MemoryReport().c_str());  // distill: its own start-up line
  }
  BATON_ASSIGN_OR_RETURN(MetricsWriter metrics, MetricsWriter::OpenAt(root ? config.output.metrics : "", step));
  BATON_ASSIGN_OR_RETURN(std::string data_hash, HashFile(config.data.path + ".bin"));
  metrics.Write({{"manifest",
                  {{"config", config.source_text}, {"git_revision", GitRevision()},
                   {"data_path", config.data.path}, {"data_bin_fnv1a64", data_hash},
                   {"parameters", num_parameters}, {"resumed_from", resume ? *resume : ""},
                   {"start_step", step}}}});
  if (root) PrintBanner(config, comms, *trainer, num_parameters, sampler);
  // ---- the loop, then the summary
  Run run{config, comms, world_comm, root, *trainer, sampler, trace.get(), metrics, summary,
          FlopsPerToken(config, num_parameters), extras};
  BATON_RETURN_IF_ERROR(RunLoop(run, step));
  BATON_RETURN_IF_ERROR(ReportAfterLoop(config, comms, trace.get(), *trainer, root, *summary));
  summary->seconds = Seconds(start, Clock::now());
  return absl::OkStatus();
}

}  // namespace baton
