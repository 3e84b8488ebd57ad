// The training loop (see train.h). One step: for each micro-batch, sample,
// forward + backward (grads accumulate, scaled by 1/tokens of the global
// batch so the loss is the mean over every token of the step), then clip,
// schedule the learning rate, AdamW; then metrics, validation, checkpoint.
// With parallel.pp > 1 the micro-batches go through a PipelineStage
// (pipeline_stage.h) on the schedule instead, and checkpoints are gathered
// to world rank 0 (one logical file, any layout loads it).
#include "launcher/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/checkpoint_dir.h"
#include "kernels/gpu.h"
#include "launcher/metrics.h"
#include "launcher/pipeline_stage.h"
#include "launcher/progress.h"
#include "nlohmann/json.hpp"
#include "runtime/bpe_tokenizer.h"
#include "runtime/corpus.h"
#include "runtime/indexed_dataset.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/rng.h"
#include "runtime/sampler.h"

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string HumanBytes(int64_t b) {
  if (b >= (int64_t{1} << 20)) return absl::StrFormat("%.1f MiB", b / 1048576.0);
  return absl::StrFormat("%.1f KiB", b / 1024.0);
}

std::string HumanRate(double r) {
  return r >= 1000 ? absl::StrFormat("%.1fk", r / 1000) : absl::StrFormat("%.0f", r);
}

// "activations kept per layer (B=16, T=128): none 1.2 MiB, full 64.0 KiB, ..."
std::string ActivationReport(const Model& model, const RecomputeConfig& chosen, int64_t b, int64_t t) {
  std::vector<std::string> parts;
  for (RecomputePolicy p : {RecomputePolicy::kNone, RecomputePolicy::kSelective,
                            RecomputePolicy::kEveryK, RecomputePolicy::kFull}) {
    RecomputeConfig rc = chosen;
    rc.policy = p;
    std::vector<int64_t> per_layer = model.ActivationBytesPerLayer(rc, b, t);
    int64_t total = 0;
    for (int64_t x : per_layer) total += x;
    std::string mark = p == chosen.policy ? "*" : "";
    parts.push_back(absl::StrCat(mark, RecomputePolicyName(p), " ",
                                 HumanBytes(total / static_cast<int64_t>(per_layer.size()))));
  }
  return absl::StrCat("activations kept per layer (B=", b, ", T=", t, "): ", absl::StrJoin(parts, ", "),
                      "  (* = recompute.policy)");
}

// A host copy of a device tensor (checkpoints are written from host memory).
Tensor OnHost(const Tensor& t) {
  if (t.device() == Device::kCpu) return t;
  Tensor h = Tensor::Empty(t.shape(), t.dtype());
  h.CopyFrom(t);
  return h;
}

// Every param with its Adam moments, as checkpoint tensors.
std::vector<CheckpointTensor> ModelTensors(Model& model, AdamWOptimizer& opt) {
  std::vector<CheckpointTensor> out;
  std::vector<Param>& params = model.params();
  // InitState resets the moments: only where none exist yet (no step ran).
  if (opt.num_states() == 0) opt.InitState(params);
  for (size_t i = 0; i < params.size(); ++i) {
    out.push_back({"params/" + params[i].name, OnHost(params[i].value)});
    out.push_back({"adam/m/" + params[i].name, OnHost(opt.m(i))});
    out.push_back({"adam/v/" + params[i].name, OnHost(opt.v(i))});
  }
  return out;
}

// ZeRO-1: after each rank updated its own params, their owners broadcast them.
absl::Status BroadcastOwnedParams(Communicator& dp, Model& model) {
  std::vector<Param>& params = model.params();
  for (size_t i = 0; i < params.size(); ++i) {
    BATON_RETURN_IF_ERROR(dp.Broadcast(params[i].value, static_cast<int>(i % dp.size())));
  }
  model.RefreshComputeWeights();
  return absl::OkStatus();
}

// ZeRO-1 checkpoint tensors (collective over dp): each moment comes from the
// rank that owns it, so the file is the same logical checkpoint as without ZeRO.
absl::StatusOr<std::vector<CheckpointTensor>> ZeroModelTensors(Model& model, AdamWOptimizer& opt,
                                                               std::vector<Param>& owned, Communicator& dp) {
  if (opt.num_states() == 0) opt.InitState(owned);
  std::vector<CheckpointTensor> out;
  std::vector<Param>& params = model.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const int owner = static_cast<int>(i % dp.size());
    const size_t j = i / dp.size();  // its index among the owner's params
    Tensor m = owner == dp.rank() ? opt.m(j).Clone() : Tensor::Empty(params[i].value.shape(), DType::kF32);
    Tensor v = owner == dp.rank() ? opt.v(j).Clone() : Tensor::Empty(params[i].value.shape(), DType::kF32);
    BATON_RETURN_IF_ERROR(dp.Broadcast(m, owner));
    BATON_RETURN_IF_ERROR(dp.Broadcast(v, owner));
    out.push_back({"params/" + params[i].name, OnHost(params[i].value)});
    out.push_back({"adam/m/" + params[i].name, m});
    out.push_back({"adam/v/" + params[i].name, v});
  }
  return out;
}

absl::Status SaveCheckpoint(const JobConfig& config, int64_t step, std::vector<CheckpointTensor> tensors,
                            int64_t optimizer_step, const Sampler& sampler, std::string* path_out) {
  CheckpointData data;
  data.step = step;
  data.tensors = std::move(tensors);
  SamplerState s = sampler.state();
  data.attrs["config"] = config.source_text;
  data.attrs["sampler"] = nlohmann::json{{"epoch", s.epoch}, {"position", s.position}}.dump();
  data.attrs["optimizer_step"] = std::to_string(optimizer_step);
  data.attrs["git_revision"] = GitRevision();
  std::string path = CheckpointPath(config.checkpoint.dir, step);
  std::error_code ec;
  std::filesystem::create_directories(config.checkpoint.dir, ec);
  BATON_RETURN_IF_ERROR(WriteCheckpoint(path, data));
  BATON_RETURN_IF_ERROR(CommitLatest(config.checkpoint.dir, path));
  BATON_RETURN_IF_ERROR(Prune(config.checkpoint.dir, config.checkpoint.keep));
  *path_out = path;
  return absl::OkStatus();
}

// Sums gradients (and the loss) over the dp group in rank order: every
// rank ends with the same bits, so clipping and AdamW stay in lockstep.
absl::Status AllReduceGradsAndLoss(Communicator& dp, const std::vector<Model*>& models, double* loss_sum) {
  for (Model* m : models) {
    for (Param& p : m->params()) BATON_RETURN_IF_ERROR(dp.AllReduceSum(p.grad));
  }
  Tensor loss = Tensor::Empty({1}, DType::kF64);
  loss.data<double>()[0] = *loss_sum;
  BATON_RETURN_IF_ERROR(dp.AllReduceSum(loss));
  *loss_sum = loss.data<double>()[0];
  return absl::OkStatus();
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

// Loads a checkpoint. A training checkpoint restores weights, Adam state,
// step and data position (an exact resume); a weights-only one (from
// `baton import`) restores the weights and starts a fresh run at step 0.
// Checkpoints are logical: each model (a pipeline part, or the whole
// model) takes its params by name, whatever layout wrote the file.
absl::Status LoadCheckpoint(const std::string& path, const std::vector<Model*>& models,
                            const std::vector<AdamWOptimizer*>& opts, Sampler& sampler, int64_t* step,
                            bool* weights_only) {
  BATON_ASSIGN_OR_RETURN(CheckpointData data, ReadCheckpoint(path));
  for (Model* model : models) {
    for (Param& p : model->params()) BATON_RETURN_IF_ERROR(CopyInto(data, "params/" + p.name, p.value));
    model->RefreshComputeWeights();  // the bf16 copies the GPU computes with
  }
  auto sampler_json = data.attrs.find("sampler");
  auto opt_step = data.attrs.find("optimizer_step");
  *weights_only = sampler_json == data.attrs.end() || opt_step == data.attrs.end();
  if (*weights_only) {
    *step = 0;
    return absl::OkStatus();
  }
  for (size_t k = 0; k < models.size(); ++k) {
    std::vector<Param>& params = models[k]->params();
    AdamWOptimizer& opt = *opts[k];
    opt.InitState(params);
    for (size_t i = 0; i < params.size(); ++i) {
      BATON_RETURN_IF_ERROR(CopyInto(data, "adam/m/" + params[i].name, opt.m(i)));
      BATON_RETURN_IF_ERROR(CopyInto(data, "adam/v/" + params[i].name, opt.v(i)));
    }
  }
  nlohmann::json s = nlohmann::json::parse(sampler_json->second, nullptr, /*allow_exceptions=*/false);
  if (!s.is_object() || !s.contains("epoch") || !s.contains("position")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": corrupt sampler state"));
  }
  BATON_RETURN_IF_ERROR(sampler.Restore({s["epoch"].get<int64_t>(), s["position"].get<int64_t>()}));
  for (AdamWOptimizer* opt : opts) opt->set_step(std::stoll(opt_step->second));
  *step = data.step;
  return absl::OkStatus();
}

double ValidationLoss(Model& model, const Sampler& sampler, const JobConfig& config, Tensor& tokens,
                      Tensor& targets) {
  const int64_t b = config.train.micro_batch_size, t = config.train.seq_len;
  int64_t batches = std::min<int64_t>(config.train.eval_batches, sampler.num_val_samples() / b);
  double sum = 0;
  for (int64_t i = 0; i < batches; ++i) {
    sampler.ValBatch(i, b, tokens, targets);
    sum += model.Loss(tokens, targets);
  }
  return batches > 0 ? sum / static_cast<double>(batches * b * t) : -1;
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
  int local_rank = 0;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"}) {
    if (const char* v = std::getenv(var)) {
      local_rank = std::atoi(v);
      break;
    }
  }
  BATON_RETURN_IF_ERROR(SelectCudaDevice(local_rank % gpus));
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

}  // namespace

absl::Status Train(const JobConfig& config, TrainSummary* summary, MeshComms* comms) {
  const Clock::time_point start = Clock::now();
  const TrainConfig& tc = config.train;
  const int world = comms != nullptr ? comms->world->size() : 1;
  const int world_rank = comms != nullptr ? comms->world->rank() : 0;
  const bool root = world_rank == 0;
  const int dp = config.parallel.dp;
  const int dp_rank = comms != nullptr ? comms->dp->rank() : 0;
  const int pp = config.parallel.pp;
  BATON_RETURN_IF_ERROR(ValidateMesh(config, world));
  if (config.parallel.tp > 1 || (config.parallel.zero != 0 && pp > 1)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "parallel.tp=", config.parallel.tp, ", parallel.zero=", config.parallel.zero, ", parallel.pp=", pp,
        ": this build executes data and pipeline parallelism (tp=1) and ZeRO-1 only without a pipeline"));
  }
  // ZeRO-1: dp rank r keeps Adam state for, and updates, params i with i % dp == r.
  const bool zero1 = config.parallel.zero == 1 && dp > 1;
  if (pp > 1) BATON_RETURN_IF_ERROR(PipelineSpecOf(config).status());  // zb-h1 is refused here
  if (pp > 1 && config.parallel.p2p == P2pTransport::kNccl) {
    return absl::FailedPreconditionError(
        "parallel.p2p=\"nccl\" needs CUDA pipeline stages, not wired into baton train yet; use \"mpi\" or \"ucx\"");
  }
  if (comms != nullptr) BATON_RETURN_IF_ERROR(CheckSameConfig(config, *comms->world));

  // ---- data (tokenized from data.corpus on first use; rank 0 writes, the others wait)
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
  BATON_ASSIGN_OR_RETURN(IndexedDataset dataset, IndexedDataset::Open(config.data.path));
  BATON_ASSIGN_OR_RETURN(Sampler sampler,
                         Sampler::Create(dataset, tc.seq_len, static_cast<uint64_t>(tc.seed),
                                         config.data.val_fraction));
  if (sampler.num_train_samples() < tc.global_batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.path=", config.data.path, " holds ", sampler.num_train_samples(),
        " training samples of train.seq_len=", tc.seq_len, ", fewer than train.global_batch_size=",
        tc.global_batch_size));
  }

  // ---- model and optimizer
  BATON_ASSIGN_OR_RETURN(const Device device, ChooseDevice(tc));
  if (device == Device::kCuda && dp > 1) {
    return absl::FailedPreconditionError(
        "parallel.dp>1 with train.device=cuda needs the NCCL gradient path, not wired into baton train yet");
  }
  if (device == Device::kCuda && pp > 1) {
    return absl::FailedPreconditionError(
        "parallel.pp>1 with train.device=cuda is not wired into baton train yet (use train.device=\"cpu\")");
  }
  const DType compute = device == Device::kCuda && tc.precision == "bf16" ? DType::kBF16 : DType::kF32;
  // pp = 1: one whole model; pp > 1: this stage's parts (`pipe`).
  std::optional<Model> whole;
  std::optional<AdamWOptimizer> whole_opt;
  std::unique_ptr<TraceRecorder> trace;
  std::unique_ptr<PipelineStage> pipe;
  std::vector<Model*> models;
  std::vector<AdamWOptimizer*> opts;
  if (pp == 1) {
    BATON_ASSIGN_OR_RETURN(Model m, Model::Create(config.model, compute, device));
    m.Init(static_cast<uint64_t>(tc.seed));
    whole.emplace(std::move(m));
    whole_opt.emplace(tc.optimizer);
    models = {&*whole};
    opts = {&*whole_opt};
  } else {
    BATON_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({dp, pp, config.parallel.tp}, world, world_rank));
    if (!config.output.trace.empty()) trace = std::make_unique<TraceRecorder>(world_rank, TraceRowName(mesh));
    BATON_ASSIGN_OR_RETURN(pipe, PipelineStage::Create(config, *comms->pp, trace.get()));
    models = pipe->models();
    opts = pipe->optimizers();
  }
  std::vector<Param> owned;        // ZeRO-1: this rank's params (handles sharing storage)
  std::vector<size_t> owned_index;  // their indices in whole->params()
  if (zero1) {
    for (size_t i = 0; i < whole->params().size(); ++i) {
      if (static_cast<int>(i % dp) == dp_rank) {
        owned.push_back(whole->params()[i]);
        owned_index.push_back(i);
      }
    }
  }
  int64_t num_parameters = 0;
  if (pipe == nullptr) {
    num_parameters = whole->NumParameters();
  } else {
    Tensor n = Tensor::Empty({1}, DType::kF64);
    n.data<double>()[0] = static_cast<double>(pipe->NumParameters());
    BATON_RETURN_IF_ERROR(comms->pp->AllReduceSum(n));
    num_parameters = static_cast<int64_t>(n.data<double>()[0]);
  }

  int64_t step = 0;
  BATON_ASSIGN_OR_RETURN(std::optional<std::string> resume, ResumePath(config.checkpoint));
  if (resume) {
    bool weights_only = false;
    AdamWOptimizer full_opt(tc.optimizer);  // ZeRO-1 loads every moment once, keeps its own
    BATON_RETURN_IF_ERROR(LoadCheckpoint(*resume, models, zero1 ? std::vector<AdamWOptimizer*>{&full_opt} : opts,
                                         sampler, &step, &weights_only));
    if (zero1 && !weights_only) {
      whole_opt->InitState(owned);
      for (size_t j = 0; j < owned.size(); ++j) {
        whole_opt->m(j).CopyFrom(full_opt.m(owned_index[j]));
        whole_opt->v(j).CopyFrom(full_opt.v(owned_index[j]));
      }
      whole_opt->set_step(full_opt.step());
    }
    if (root && weights_only) {
      std::printf("initialised weights from %s (no optimizer or data state: a new run from step 0)\n",
                  resume->c_str());
    } else if (root) {
      std::printf("resumed from %s at step %lld\n", resume->c_str(), static_cast<long long>(step));
    }
  }

  // ---- metrics manifest (rank 0 only)
  BATON_ASSIGN_OR_RETURN(MetricsWriter metrics,
                         MetricsWriter::Open(root ? config.output.metrics : "", step > 0));
  BATON_ASSIGN_OR_RETURN(std::string data_hash, HashFile(config.data.path + ".bin"));
  metrics.Write({{"manifest",
                  {{"config", config.source_text},
                   {"git_revision", GitRevision()},
                   {"data_path", config.data.path},
                   {"data_bin_fnv1a64", data_hash},
                   {"parameters", num_parameters},
                   {"resumed_from", resume ? *resume : ""},
                   {"start_step", step}}}});

  const int64_t b = tc.micro_batch_size, t = tc.seq_len;
  const int64_t micro_steps = config.microbatches();  // per dp replica
  const int64_t tokens_per_step = static_cast<int64_t>(tc.global_batch_size) * t;
  if (root) {
  if (world > 1) {
    std::printf("mesh: dp=%d pp=%d tp=%d over %d ranks (MPI, p2p %s)\n", dp, config.parallel.pp,
                config.parallel.tp, world, comms->pp->backend());
  }
  if (pipe != nullptr) {
    std::printf("pipeline: %s; %s\n", ToString(pipe->spec()).c_str(), pipe->Describe().c_str());
  }
  std::printf("model: %lld parameters (%d layers, dim %d, %d heads, %d kv heads, ffn %d, vocab %d)\n",
              static_cast<long long>(num_parameters), config.model.layers, config.model.dim,
              config.model.heads, config.model.kv_heads, config.model.ffn_dim, config.model.vocab_size);
  std::printf("data: %s, %lld train / %lld val samples of %lld tokens; %lld micro-batches of %lld per step\n",
              config.data.path.c_str(), static_cast<long long>(sampler.num_train_samples()),
              static_cast<long long>(sampler.num_val_samples()), static_cast<long long>(t),
              static_cast<long long>(micro_steps), static_cast<long long>(b));
  std::printf("%s\n", ActivationReport(*models[0], config.recompute, b, t).c_str());
  std::fflush(stdout);
  }

  Tensor tokens = Tensor::Empty({b, t}, DType::kI32);
  Tensor targets = Tensor::Empty({b, t}, DType::kI32);
  std::vector<Tensor> mb_tokens, mb_targets;  // pipeline: every micro-batch of the step
  for (int64_t m = 0; pipe != nullptr && m < micro_steps; ++m) {
    mb_tokens.push_back(Tensor::Empty({b, t}, DType::kI32));
    mb_targets.push_back(Tensor::Empty({b, t}, DType::kI32));
  }
  // Under mpirun rank 0's stdout may be a pty, but it ends up in a job log: lines.
  Progress progress(tc.steps, tc.log_every,
                    config.output.progress == ProgressMode::kBar     ? Progress::Mode::kBar
                    : config.output.progress == ProgressMode::kLines ? Progress::Mode::kLines
                    : world > 1                                      ? Progress::Mode::kLines
                                                                     : Progress::Mode::kAuto);
  const int64_t stop = tc.exit_interval > 0 ? std::min(tc.steps, step + tc.exit_interval) : tc.steps;
  summary->first_step = step + 1;
  double timed_seconds = 0;
  int64_t timed_tokens = 0;
  std::string last_checkpoint;
  while (step < stop) {
    const Clock::time_point t0 = Clock::now();
    for (Model* m : models) m->ZeroGrad();
    // Every rank draws the same global batch; dp rank r trains on its
    // contiguous share, micro-batch by micro-batch.
    const std::vector<int64_t> ids = sampler.NextSampleIds(tc.global_batch_size);
    const int64_t share = tc.global_batch_size / dp;
    const double grad_scale = 1.0 / static_cast<double>(tokens_per_step);
    double loss_sum = 0;
    if (pipe == nullptr) {
      for (int64_t m = 0; m < micro_steps; ++m) {
        sampler.FillTrain(absl::MakeConstSpan(ids).subspan(dp_rank * share + m * b, b), tokens, targets);
        loss_sum += whole->ForwardBackward(tokens, targets, grad_scale, config.recompute);
      }
    } else {
      for (int64_t m = 0; m < micro_steps; ++m) {
        sampler.FillTrain(absl::MakeConstSpan(ids).subspan(dp_rank * share + m * b, b), mb_tokens[m],
                          mb_targets[m]);
      }
      if (trace != nullptr && step + 1 == stop) {  // output.trace: the last step's timeline
        BATON_RETURN_IF_ERROR(trace->SyncOrigin(*comms->world));
      }
      if (trace != nullptr) trace->Clear();
      BATON_ASSIGN_OR_RETURN(loss_sum, pipe->RunStep(mb_tokens, mb_targets, grad_scale, config.recompute));
      BATON_RETURN_IF_ERROR(pipe->SumTiedEmbeddingGrads());
    }
    if (dp > 1) BATON_RETURN_IF_ERROR(AllReduceGradsAndLoss(*comms->dp, models, &loss_sum));
    const double loss = loss_sum / static_cast<double>(tokens_per_step);
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrCat("loss is ", loss, " at step ", step + 1,
                                              " (try a lower train.lr)"));
    }
    double grad_norm = 0;
    if (pipe != nullptr) {
      BATON_ASSIGN_OR_RETURN(grad_norm, pipe->ClipGradNorm(tc.optimizer.grad_clip));
    } else {
      grad_norm = device == Device::kCuda
                      ? ClipGradNorm(whole->params(), tc.optimizer.grad_clip, whole->flat_grads())
                      : ClipGradNorm(whole->params(), tc.optimizer.grad_clip);
    }
    const float lr = LearningRate(tc.optimizer, step, tc.steps);
    if (pipe != nullptr) {
      pipe->OptimizerStep(lr);
    } else {
      whole_opt->Step(zero1 ? owned : whole->params(), lr);
      if (zero1) BATON_RETURN_IF_ERROR(BroadcastOwnedParams(*comms->dp, *whole));
    }
    ++step;
    const double dt = Seconds(t0, Clock::now());
    if (step > summary->first_step) {  // the first step pays for allocation
      timed_seconds += dt;
      timed_tokens += tokens_per_step;
    }
    const double tok_s = tokens_per_step / dt;
    if (step == summary->first_step) summary->first_loss = loss;
    summary->last_loss = loss;

    // Validation and the checkpoint gather need every stage of dp replica 0.
    const bool last = step == stop;
    const bool eval = (tc.eval_every > 0 && step % tc.eval_every == 0) || (last && tc.eval_every > 0);
    const bool save = !config.checkpoint.dir.empty() &&
                      ((config.checkpoint.every > 0 && step % config.checkpoint.every == 0) || last);
    double val = -1;
    std::vector<CheckpointTensor> ckpt;
    if (pipe == nullptr) {
      if (root && eval) val = ValidationLoss(*whole, sampler, config, tokens, targets);
      if (save && zero1) {  // collective: every rank lends its moments
        BATON_ASSIGN_OR_RETURN(ckpt, ZeroModelTensors(*whole, *whole_opt, owned, *comms->dp));
        if (!root) ckpt.clear();
      } else if (root && save) {
        ckpt = ModelTensors(*whole, *whole_opt);
      }
    } else if (dp_rank == 0) {
      if (eval) {
        BATON_ASSIGN_OR_RETURN(val, pipe->ValidationLoss(sampler, config));
      }
      if (save) {
        BATON_ASSIGN_OR_RETURN(ckpt, pipe->GatherCheckpoint());
      }
    }
    if (!root) continue;  // the rest is reporting and writing
    metrics.Write({{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", grad_norm},
                   {"tokens_per_s", tok_s}, {"tokens", step * tokens_per_step}});
    progress.Update(step, absl::StrFormat("loss %.4f  lr %.2e  gnorm %.3f  %s tok/s", loss, lr,
                                          grad_norm, HumanRate(tok_s)));
    if (val >= 0) {
      summary->last_val_loss = val;
      metrics.Write({{"step", step}, {"val_loss", val}});
      progress.Note(absl::StrFormat("step %lld  val_loss %.4f", static_cast<long long>(step), val));
    }
    if (save) {
      BATON_RETURN_IF_ERROR(SaveCheckpoint(config, step, std::move(ckpt), opts[0]->step(), sampler,
                                           &last_checkpoint));
      progress.Note(absl::StrCat("step ", step, "  checkpoint ", last_checkpoint));
    }
  }
  if (root) progress.Finish();
  if (trace != nullptr) {
    BATON_RETURN_IF_ERROR(GatherChromeTrace(*comms->world, *trace, config.output.trace));
    if (root) std::printf("trace: %s (the last step, one row per rank)\n", config.output.trace.c_str());
  }
  summary->last_step = step;
  summary->tokens_per_s = timed_seconds > 0 ? timed_tokens / timed_seconds : 0;
  summary->seconds = Seconds(start, Clock::now());
  summary->checkpoint = last_checkpoint;
  return absl::OkStatus();
}

}  // namespace baton
