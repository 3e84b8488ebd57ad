// The `baton infer` driver (see infer.h): reads this rank's share of the
// prompt file lazily (the generator holds a few batches' worth of requests,
// never the file), writes error records for bad lines at once and results
// as requests finish, and reports progress and metrics.
#include "launcher/infer.h"

#include <mpi.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/check.h"
#include "kernels/gpu.h"
#include "launcher/infer_checkpoint.h"
#include "launcher/infer_io.h"
#include "launcher/mpi_session.h"
#include "launcher/progress.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "parallel/pipelined_decode.h"
#include "parallel/tp_collectives.h"
#include "runtime/batch_generator.h"
#include "runtime/rng.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/memory_info.h"
#include "runtime/cuda_allocator.h"
#endif

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;

int64_t PeakRssBytes() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

// A request's generation parameters: its line's fields over the config's.
GenerationRequest ToGeneration(const InferRequest& r, const InferConfig& c, const Tokenizer& tok, int64_t handle) {
  GenerationRequest g;
  g.handle = handle;
  if (r.tokens) {
    g.prompt = *r.tokens;
  } else {
    if (c.add_bos && tok.bos_id() >= 0) g.prompt.push_back(tok.bos_id());
    const std::vector<int32_t> ids = tok.Encode(r.prompt);
    g.prompt.insert(g.prompt.end(), ids.begin(), ids.end());
  }
  g.max_new_tokens = r.max_new_tokens.value_or(c.max_new_tokens);
  g.sampling.temperature = r.temperature.value_or(c.temperature);
  g.sampling.top_k = r.top_k.value_or(c.top_k);
  g.sampling.top_p = r.top_p.value_or(c.top_p);
  // No seed on the line: one derived from the id, so a restart draws the same tokens.
  g.sampling.seed = r.seed ? *r.seed : Fnv1a64(IdKey(r.id), Fnv1a64(absl::StrCat(c.seed)));
  g.stop = r.stop;
  g.stop_at_eos = c.stop_at_eos;
  return g;
}

// The lines of this rank's share: counted first (for the progress total).
int64_t CountShare(const std::string& path, int rank, int world) {
  std::ifstream in(path);
  std::string line;
  int64_t n = 0, share = 0;
  while (std::getline(in, line)) {
    if (n++ % world == rank && line.find_first_not_of(" \t\r") != std::string::npos) ++share;
  }
  return share;
}

// Sums counters and gathers latencies over ranks onto rank 0. Only the
// writer of each replica (tp and pp rank 0) holds counters; the others' are 0.
void ReduceSummary(InferSummary& s, int world, int replicas) {
  if (world == 1) return;
  int64_t counts[10] = {s.requests, s.errors,         s.skipped, s.prompt_tokens, s.completion_tokens,
                        s.prefill_tokens, s.decode_tokens, s.steps, s.preemptions, s.generated_tokens};
  MPI_Allreduce(MPI_IN_PLACE, counts, 10, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  double maxes[6] = {s.wall_s,      s.prefill_s, s.decode_s, s.kv_peak_use, static_cast<double>(s.peak_memory_bytes),
                     static_cast<double>(s.peak_gpu_bytes)};
  MPI_Allreduce(MPI_IN_PLACE, maxes, 6, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  double occupancy = s.batch_occupancy;
  MPI_Allreduce(MPI_IN_PLACE, &occupancy, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  int64_t refills = s.refills;
  MPI_Allreduce(MPI_IN_PLACE, &refills, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  for (std::vector<double>* v : {&s.latency_s, &s.ttft_s}) {
    int n = static_cast<int>(v->size());
    std::vector<int> sizes(world), offsets(world, 0);
    MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, MPI_COMM_WORLD);
    for (int r = 1; r < world; ++r) offsets[r] = offsets[r - 1] + sizes[r - 1];
    std::vector<double> all(static_cast<size_t>(offsets[world - 1] + sizes[world - 1]));
    MPI_Allgatherv(v->data(), n, MPI_DOUBLE, all.data(), sizes.data(), offsets.data(), MPI_DOUBLE, MPI_COMM_WORLD);
    *v = std::move(all);
  }
  s.requests = counts[0], s.errors = counts[1], s.skipped = counts[2], s.prompt_tokens = counts[3];
  s.completion_tokens = counts[4], s.prefill_tokens = counts[5], s.decode_tokens = counts[6], s.steps = counts[7];
  s.preemptions = counts[8], s.generated_tokens = counts[9], s.refills = refills;
  // Throughputs over the job: each rank ran in parallel, so the time is the longest rank's.
  s.wall_s = maxes[0], s.prefill_s = maxes[1], s.decode_s = maxes[2], s.kv_peak_use = maxes[3];
  s.peak_memory_bytes = static_cast<int64_t>(maxes[4]);
  s.peak_gpu_bytes = static_cast<int64_t>(maxes[5]);
  s.batch_occupancy = occupancy / replicas;
  s.ranks = world;
}

// One rank's run: set up once, then a loop that keeps the generator fed
// from the prompt file and writes every record as it is known. Held behind
// a pointer: the decode model and generator point into the cache and model.
// Under tp/pp every rank of a data-parallel replica reads the replica's
// share and runs the same generator (same requests, same logits, so the
// same decisions); only its tp-0, pp-0 rank (the writer) writes and counts.
class InferJob {
 public:
  InferJob(const InferPaths& paths, const InferConfig& config, int rank, int world)
      : paths_(paths), config_(config), rank_(rank), world_(world), start_(Clock::now()) {}

  // The dp x pp x tp mesh and its communicators (world > 1 only).
  absl::Status SetUpMesh();

  // Device, weights, KV cache and generator; then the files and the start-up lines.
  absl::Status SetUp();
  absl::Status OpenFiles();
  absl::Status Run();
  InferSummary Summary();

 private:
  absl::Status Feed();  // reads lines until the generator holds enough work
  absl::Status HandleLine(const std::string& text);
  absl::Status WriteError(const InferLineError& e);
  void NoteDone();
  void PrintStartUp() const;

  InferPaths paths_;
  InferConfig config_;
  int rank_, world_;
  Clock::time_point start_;
  Device device_ = Device::kCpu;
  DType dtype_ = DType::kF32;
  int64_t context_ = 0;
  std::optional<InferModel> loaded_;
  std::optional<KvCache> cache_;
  std::optional<DecodeModel> decode_;
  std::optional<BatchGenerator> gen_;
  std::optional<Mesh> mesh_;
  std::optional<MeshComms> comms_;
  std::unique_ptr<CommTpCollectives> tp_;
  std::unique_ptr<PipelinedDecode> pipe_;
  int dp_rank_ = 0, dp_ = 1;  // the replica and the replicas: the prompt file's shares
  bool writer_ = true;        // tp rank 0 and pp rank 0 of its replica
  std::ifstream in_;
  std::optional<InferOutput> out_;
  std::optional<Progress> progress_;
  InferFormat format_ = InferFormat::kBaton;
  bool detected_ = false, eof_ = false;
  int64_t line_no_ = 0, handled_ = 0, share_ = 0;
  std::unordered_map<int64_t, InferRequest> live_;  // handle (line number) -> request
  std::map<std::string, int64_t> first_line_;       // id key -> first line using it (the whole file)
  InferSummary s_;
};

absl::Status InferJob::SetUpMesh() {
  const int cell = config_.tp * config_.pp;
  if (world_ % cell != 0) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.tp=", config_.tp, " x parallel.pp=", config_.pp, " = ", cell,
                                                   " does not divide the ", world_, " ranks (dp = ranks / (tp x pp))"));
  }
  BATON_ASSIGN_OR_RETURN(Mesh mesh, Mesh::Create({.dp = world_ / cell, .pp = config_.pp, .tp = config_.tp}, world_, rank_));
  mesh_.emplace(mesh);
  BATON_ASSIGN_OR_RETURN(MeshComms comms, CreateMpiMeshComms(*mesh_));
  comms_.emplace(std::move(comms));
  tp_ = std::make_unique<CommTpCollectives>(*comms_->tp);
  dp_rank_ = mesh_->dp_rank(), dp_ = mesh_->shape().dp;
  writer_ = mesh_->tp_rank() == 0 && mesh_->pp_rank() == 0;
  return absl::OkStatus();
}

absl::Status InferJob::SetUp() {
  if (world_ > 1) BATON_RETURN_IF_ERROR(SetUpMesh());
  const bool split = config_.tp > 1 || config_.pp > 1;
  if (split && config_.device == "cuda") {
    return absl::FailedPreconditionError(absl::StrCat("parallel.tp=", config_.tp, " parallel.pp=", config_.pp,
                                                      ": baton infer splits the model on the CPU only so far "
                                                      "(infer.device=cpu, or tp=1 pp=1 on GPUs)"));
  }
  // "auto" stays on the CPU until the CUDA decode has been checked on GPUs (docs/inference.md).
  device_ = config_.device == "cuda" ? Device::kCuda : Device::kCpu;
  dtype_ = config_.dtype == "f64"    ? DType::kF64
           : config_.dtype == "bf16" ? DType::kBF16
           : config_.dtype == "f32"  ? DType::kF32
                                     : (device_ == Device::kCuda ? DType::kBF16 : DType::kF32);
  Allocator* cache_alloc = DefaultCpuAllocator();
  int64_t kv_bytes = config_.kv_cache_bytes;
  if (device_ == Device::kCuda) {
    if (CudaDeviceCount() == 0) {
      return absl::FailedPreconditionError(absl::StrCat("infer.device=cuda: ", CudaDeviceSummary()));
    }
    BATON_RETURN_IF_ERROR(SelectCudaDevice(rank_ % CudaDeviceCount()));
  }
  TensorParallel tp;
  if (mesh_) tp = TensorParallel{config_.tp, mesh_->tp_rank(), tp_.get()};
  BATON_ASSIGN_OR_RETURN(InferModel loaded, LoadInferModel(paths_.checkpoint, dtype_, device_, config_.pp,
                                                           mesh_ ? mesh_->pp_rank() : 0, tp));
  loaded_.emplace(std::move(loaded));
#ifdef BATON_HAVE_CUDA
  if (device_ == Device::kCuda) {  // a share of what the weights left free (the rest: activations)
    cache_alloc = DefaultCudaAllocator();
    BATON_ASSIGN_OR_RETURN(cuda::GpuMemory mem, cuda::CurrentGpuMemory());
    kv_bytes = static_cast<int64_t>(config_.kv_cache_fraction * static_cast<double>(mem.free_bytes));
  }
#endif
  context_ = config_.max_seq_len > 0 ? config_.max_seq_len : loaded_->context;
  KvCacheShape shape = KvCacheShape::For(loaded_->model.config(), dtype_, config_.block_size);
  shape.layers = loaded_->model.slice().last_layer - loaded_->model.slice().first_layer;  // this stage's
  shape.kv_heads /= config_.tp;                                                           // this tp rank's
  int64_t blocks = KvBlocksForBytes(shape, kv_bytes);
  // Every rank of a replica runs the same scheduler: the same number of blocks everywhere.
  if (world_ > 1) MPI_Allreduce(MPI_IN_PLACE, &blocks, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
  BATON_ASSIGN_OR_RETURN(KvCache cache, KvCache::Create(shape, blocks, cache_alloc));
  cache_.emplace(std::move(cache));
  BATON_ASSIGN_OR_RETURN(DecodeModel decode, DecodeModel::Create(loaded_->model, *cache_));
  decode_.emplace(std::move(decode));
  decode_->set_cuda_graphs(config_.cuda_graphs);  // whole-model steps at tp = 1 only
  DecodeForward* forward = &*decode_;
  if (config_.pp > 1) {
    pipe_ = std::make_unique<PipelinedDecode>(*decode_, *comms_->pp, 0, PipelineExecutorOptions{}, rank_);
    forward = pipe_.get();
  }
  gen_.emplace(*forward, *cache_, loaded_->tokenizer.get(),
               SchedulerConfig{.max_batch = config_.max_batch, .max_prefill_tokens = config_.max_prefill_tokens},
               context_);
  return absl::OkStatus();
}

absl::Status InferJob::OpenFiles() {
  in_.open(paths_.prompts);
  if (!in_) return absl::NotFoundError(absl::StrCat("--prompts ", paths_.prompts, ": cannot be read"));
  // Rank 0 cuts a torn last line before any rank reads the output or appends.
  if (world_ > 1 && rank_ != 0) MPI_Barrier(MPI_COMM_WORLD);
  absl::StatusOr<InferOutput> out = InferOutput::Open(paths_.out, /*repair=*/rank_ == 0);
  if (world_ > 1 && rank_ == 0) MPI_Barrier(MPI_COMM_WORLD);
  if (!out.ok()) return out.status();
  out_.emplace(std::move(*out));
  share_ = CountShare(paths_.prompts, dp_rank_, dp_);
  const Progress::Mode mode = config_.progress == "bar"     ? Progress::Mode::kBar
                              : config_.progress == "lines" ? Progress::Mode::kLines
                                                            : Progress::Mode::kAuto;
  progress_.emplace(std::max<int64_t>(share_, 1), std::max<int64_t>(share_ / 20, 1), mode);
  if (rank_ == 0) PrintStartUp();
  return absl::OkStatus();
}

void InferJob::PrintStartUp() const {
  const ModelConfig& m = loaded_->model.config();
  std::printf("infer: %s (step %lld): %d layers, dim %d, %d/%d heads, vocab %d, context %lld; %s on %s, %d rank%s "
              "(dp %d x pp %d x tp %d)\n",
              loaded_->path.c_str(), static_cast<long long>(loaded_->step), m.layers, m.dim, m.heads, m.kv_heads,
              m.vocab_size, static_cast<long long>(context_), DTypeName(dtype_),
              device_ == Device::kCuda ? "the GPU" : "the CPU", world_, world_ > 1 ? "s" : "", dp_, config_.pp,
              config_.tp);
  const int64_t resumed = out_->answered().lines;
  std::printf("infer: KV cache %lld blocks x %lld tokens = %lld tokens (%.1f MiB per rank), max batch %d%s\n",
              static_cast<long long>(cache_->num_blocks()), static_cast<long long>(cache_->block_size()),
              static_cast<long long>(cache_->capacity_tokens()), static_cast<double>(cache_->bytes()) / (1 << 20),
              config_.max_batch,
              resumed > 0 ? absl::StrFormat("; resuming: %d lines already in %s", resumed, paths_.out).c_str() : "");
  std::fflush(stdout);
}

void InferJob::NoteDone() {
  ++handled_;
  if (rank_ != 0) return;
  const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  progress_->Update(handled_, absl::StrFormat("requests, %.0f generated tok/s",
                                              secs > 0 ? gen_->stats().generated_tokens / secs : 0.0));
}

absl::Status InferJob::WriteError(const InferLineError& e) {
  NoteDone();
  if (!writer_) return absl::OkStatus();
  ++s_.errors;
  return out_->Append(FormatError(format_, e));
}

absl::Status InferJob::HandleLine(const std::string& text) {
  if (!detected_) format_ = DetectInferFormat(text), detected_ = true;
  ParsedLine p = ParseInferLine(text, line_no_, format_);
  const nlohmann::json id = p.request ? p.request->id : p.error->id;
  // A repeated id is an error of its line, recorded without an id (keyed by
  // the line number on restart) so that it never masks the first line's result.
  const int64_t first = id.is_null() ? line_no_ : first_line_.emplace(IdKey(id), line_no_).first->second;
  if ((line_no_ - 1) % dp_ != dp_rank_) return absl::OkStatus();  // another rank's (its id is tracked above)
  const AnsweredSet& answered = out_->answered();
  const bool keyed_by_line = id.is_null() || first != line_no_;
  if (keyed_by_line ? answered.id_less.count(line_no_) > 0 : answered.ids.count(IdKey(id)) > 0) {
    if (writer_) ++s_.skipped;
    NoteDone();
    return absl::OkStatus();
  }
  if (first != line_no_) {
    return WriteError({line_no_, nullptr, absl::StrCat("duplicate id ", IdKey(id), ", first seen on line ", first)});
  }
  if (p.error) return WriteError(*p.error);
  absl::Status added = gen_->Add(ToGeneration(*p.request, config_, *loaded_->tokenizer, line_no_));
  if (!added.ok()) return WriteError({line_no_, id, std::string(added.message())});
  live_.emplace(line_no_, std::move(*p.request));
  return absl::OkStatus();
}

absl::Status InferJob::Feed() {
  std::string text;
  while (!eof_ && gen_->live() < 2 * static_cast<int64_t>(config_.max_batch)) {
    if (!std::getline(in_, text)) {
      eof_ = true;
      break;
    }
    ++line_no_;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are not prompts
    BATON_RETURN_IF_ERROR(HandleLine(text));
  }
  return absl::OkStatus();
}

absl::Status InferJob::Run() {
  BATON_RETURN_IF_ERROR(Feed());
  while (!gen_->idle()) {
    BATON_ASSIGN_OR_RETURN(std::vector<GenerationResult> done, gen_->Step());
    for (GenerationResult& r : done) {
      auto it = live_.find(r.handle);
      BATON_CHECK(it != live_.end());
      const InferResult res{std::move(r.text), std::move(r.tokens), r.finish_reason, r.prompt_tokens, r.ttft_s,
                            r.latency_s};
      if (!writer_) {
        live_.erase(it);
        NoteDone();
        continue;
      }
      BATON_RETURN_IF_ERROR(out_->Append(FormatResult(format_, it->second, res)));
      live_.erase(it);
      ++s_.requests;
      s_.prompt_tokens += res.prompt_tokens;
      s_.completion_tokens += static_cast<int64_t>(res.tokens.size());
      s_.latency_s.push_back(res.latency_s);
      s_.ttft_s.push_back(res.ttft_s);
      NoteDone();
    }
    BATON_RETURN_IF_ERROR(Feed());
  }
  if (rank_ == 0) progress_->Finish();
  return absl::OkStatus();
}

InferSummary InferJob::Summary() {
  InferSummary s = std::move(s_);
  const SchedulerStats& st = gen_->scheduler_stats();
  const GenerationStats& g = gen_->stats();
  s.prefill_tokens = g.prefill_tokens;
  s.generated_tokens = g.generated_tokens;
  s.decode_tokens = g.decode_tokens;
  s.prefill_s = g.prefill_s;
  s.decode_s = g.decode_s;
  s.steps = st.steps;
  s.preemptions = st.preemptions;
  s.refills = st.refills;
  s.batch_occupancy = st.steps > 0 ? static_cast<double>(st.occupancy_sum) / st.steps / config_.max_batch : 0;
  s.kv_peak_use = static_cast<double>(st.peak_blocks) / static_cast<double>(cache_->num_blocks());
  if (!writer_) {  // the writer of the replica counts its steps and tokens (ReduceSummary sums)
    s.prefill_tokens = s.generated_tokens = s.decode_tokens = s.steps = s.preemptions = s.refills = 0;
    s.batch_occupancy = 0;
  }
  s.kv_capacity_tokens = cache_->capacity_tokens();
  s.peak_memory_bytes = PeakRssBytes();
#ifdef BATON_HAVE_CUDA
  if (device_ == Device::kCuda) s.peak_gpu_bytes = static_cast<int64_t>(DefaultCudaAllocator()->stats().peak_in_use);
#endif
  s.wall_s = std::chrono::duration<double>(Clock::now() - start_).count();
  return s;
}

}  // namespace

absl::Status RunInfer(const InferPaths& paths, const InferConfig& config, int rank, int world, InferSummary* summary) {
  auto job = std::make_unique<InferJob>(paths, config, rank, world);
  BATON_RETURN_IF_ERROR(job->SetUp());
  BATON_RETURN_IF_ERROR(job->OpenFiles());
  BATON_RETURN_IF_ERROR(job->Run());
  InferSummary s = job->Summary();
  ReduceSummary(s, world, world / (config.tp * config.pp));
  if (rank == 0 && !config.metrics_prom.empty()) BATON_RETURN_IF_ERROR(WriteInferPrometheus(config.metrics_prom, s));
  *summary = std::move(s);
  return absl::OkStatus();
}

int RunInferCommand(const std::vector<std::string>& args) {
  constexpr char kUsage[] =
      "baton infer --checkpoint CKPT --prompts IN.jsonl --out OUT.jsonl [--config infer.toml] [--set infer.key=value ...]";
  InferPaths paths;
  std::string config_path;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--set") {
      while (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "--")) overrides.push_back(args[++i]);
      continue;
    }
    std::string* dst = a == "--checkpoint" ? &paths.checkpoint
                       : a == "--prompts"  ? &paths.prompts
                       : a == "--out"      ? &paths.out
                       : a == "--config"   ? &config_path
                                           : nullptr;
    if (dst == nullptr || i + 1 >= args.size()) {
      std::fprintf(stderr, "baton: error: %s '%s' (usage: %s)\n", dst == nullptr ? "unknown argument" : "no value for",
                   a.c_str(), kUsage);
      return 2;
    }
    *dst = args[++i];
  }
  for (const auto& [flag, value] : {std::pair{"--checkpoint", paths.checkpoint}, {"--prompts", paths.prompts},
                                    {"--out", paths.out}}) {
    if (value.empty()) {
      std::fprintf(stderr, "baton: error: infer: %s is required (usage: %s)\n", flag, kUsage);
      return 2;
    }
  }
  MpiSession mpi;
  absl::StatusOr<InferConfig> config = LoadInferConfig(config_path, overrides);
  if (!config.ok()) return mpi.Fail(config.status());
  InferSummary summary;
  absl::Status s = RunInfer(paths, *config, mpi.rank(), mpi.size(), &summary);
  if (!s.ok()) return mpi.Fail(s);
  if (mpi.rank() == 0) {
    std::printf("%s\nresults: %s\n", FormatInferSummary(summary).c_str(), paths.out.c_str());
    if (!config->metrics_prom.empty()) std::printf("metrics: %s\n", config->metrics_prom.c_str());
  }
  return 0;
}

}  // namespace baton
