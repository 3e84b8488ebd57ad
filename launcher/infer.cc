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

// Sums counters and gathers latencies over ranks onto rank 0.
void ReduceSummary(InferSummary& s, int world) {
  if (world == 1) return;
  int64_t counts[10] = {s.requests, s.errors,         s.skipped, s.prompt_tokens, s.completion_tokens,
                        s.prefill_tokens, s.decode_tokens, s.steps, s.preemptions, s.generated_tokens};
  MPI_Allreduce(MPI_IN_PLACE, counts, 10, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  double maxes[5] = {s.wall_s, s.prefill_s, s.decode_s, s.kv_peak_use, static_cast<double>(s.peak_memory_bytes)};
  MPI_Allreduce(MPI_IN_PLACE, maxes, 5, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
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
  s.batch_occupancy = occupancy / world;
  s.ranks = world;
}

// State of one rank's pass over the prompt file.
struct Pass {
  InferFormat format = InferFormat::kBaton;
  std::unordered_map<int64_t, InferRequest> live;   // handle (line number) -> request
  std::map<std::string, int64_t> first_line;         // id key -> first line that used it (the whole file)
};

}  // namespace

absl::Status RunInfer(const InferPaths& paths, const InferConfig& config, int rank, int world, InferSummary* summary) {
  const Clock::time_point start = Clock::now();
  // "auto" stays on the CPU until the CUDA decode has been checked on GPUs (docs/inference.md).
  const Device device = config.device == "cuda" ? Device::kCuda : Device::kCpu;
  const DType dtype = config.dtype == "f64"    ? DType::kF64
                      : config.dtype == "bf16" ? DType::kBF16
                      : config.dtype == "f32"  ? DType::kF32
                                               : (device == Device::kCuda ? DType::kBF16 : DType::kF32);
  Allocator* cache_alloc = DefaultCpuAllocator();
  if (device == Device::kCuda) {
    if (CudaDeviceCount() == 0) {
      return absl::FailedPreconditionError(absl::StrCat("infer.device=cuda: ", CudaDeviceSummary()));
    }
    BATON_RETURN_IF_ERROR(SelectCudaDevice(rank % CudaDeviceCount()));
#ifdef BATON_HAVE_CUDA
    cache_alloc = DefaultCudaAllocator();
#endif
  }
  BATON_ASSIGN_OR_RETURN(InferModel loaded, LoadInferModel(paths.checkpoint, dtype, device));
  const int64_t context = config.max_seq_len > 0 ? config.max_seq_len : loaded.context;
  const KvCacheShape shape = KvCacheShape::For(loaded.model.config(), dtype, config.block_size);
  int64_t kv_bytes = config.kv_cache_bytes;
#ifdef BATON_HAVE_CUDA
  if (device == Device::kCuda) {  // what the weights left free, less a margin for activations
    BATON_ASSIGN_OR_RETURN(cuda::GpuMemory mem, cuda::CurrentGpuMemory());
    kv_bytes = static_cast<int64_t>(config.kv_cache_fraction * static_cast<double>(mem.free_bytes));
  }
#endif
  BATON_ASSIGN_OR_RETURN(KvCache cache, KvCache::Create(shape, KvBlocksForBytes(shape, kv_bytes), cache_alloc));
  BATON_ASSIGN_OR_RETURN(DecodeModel decode, DecodeModel::Create(loaded.model, cache));
  BatchGenerator gen(decode, cache, loaded.tokenizer.get(),
                     {.max_batch = config.max_batch, .max_prefill_tokens = config.max_prefill_tokens}, context);

  std::ifstream in(paths.prompts);
  if (!in) return absl::NotFoundError(absl::StrCat("--prompts ", paths.prompts, ": cannot be read"));
  // Rank 0 cuts a torn last line before any rank reads the output or appends.
  if (world > 1 && rank != 0) MPI_Barrier(MPI_COMM_WORLD);
  absl::StatusOr<InferOutput> out = InferOutput::Open(paths.out, /*repair=*/rank == 0);
  if (world > 1 && rank == 0) MPI_Barrier(MPI_COMM_WORLD);
  if (!out.ok()) return out.status();
  const int64_t share = CountShare(paths.prompts, rank, world);
  if (rank == 0) {
    const ModelConfig& m = loaded.model.config();
    std::printf("infer: %s (step %lld): %d layers, dim %d, %d/%d heads, vocab %d, context %lld; %s on %s, %d rank%s\n",
                loaded.path.c_str(), static_cast<long long>(loaded.step), m.layers, m.dim, m.heads, m.kv_heads,
                m.vocab_size, static_cast<long long>(context), DTypeName(dtype),
                device == Device::kCuda ? "the GPU" : "the CPU", world, world > 1 ? "s" : "");
    std::printf("infer: KV cache %lld blocks x %lld tokens = %lld tokens (%.1f MiB per rank), max batch %d%s\n",
                static_cast<long long>(cache.num_blocks()), static_cast<long long>(cache.block_size()),
                static_cast<long long>(cache.capacity_tokens()), static_cast<double>(cache.bytes()) / (1 << 20),
                config.max_batch,
                out->answered().lines > 0 ? absl::StrFormat("; resuming: %d lines already in %s", out->answered().lines,
                                                            paths.out).c_str()
                                          : "");
    std::fflush(stdout);
  }
  const Progress::Mode mode = config.progress == "bar"     ? Progress::Mode::kBar
                              : config.progress == "lines" ? Progress::Mode::kLines
                                                           : Progress::Mode::kAuto;
  Progress progress(std::max<int64_t>(share, 1), std::max<int64_t>(share / 20, 1), mode);
  InferSummary s;
  Pass pass;
  int64_t line_no = 0, handled = 0;
  bool detected = false, eof = false;
  const AnsweredSet& answered = out->answered();
  auto note_done = [&] {
    ++handled;
    if (rank == 0) {
      const double secs = std::chrono::duration<double>(Clock::now() - start).count();
      progress.Update(handled, absl::StrFormat("requests, %.0f generated tok/s",
                                               secs > 0 ? gen.stats().generated_tokens / secs : 0.0));
    }
  };
  auto write_error = [&](const InferLineError& e) -> absl::Status {
    ++s.errors;
    note_done();
    return out->Append(FormatError(pass.format, e));
  };
  // Reads lines until the generator holds enough work or the file ends.
  auto feed = [&]() -> absl::Status {
    std::string text;
    while (!eof && gen.live() < 2 * static_cast<int64_t>(config.max_batch)) {
      if (!std::getline(in, text)) {
        eof = true;
        break;
      }
      ++line_no;
      if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (!detected) pass.format = DetectInferFormat(text), detected = true;
      ParsedLine p = ParseInferLine(text, line_no, pass.format);
      const nlohmann::json id = p.request ? p.request->id : p.error->id;
      // A repeated id is an error of its line, recorded without an id (keyed
      // by the line number on restart) so it never masks the first line's result.
      const int64_t first = id.is_null() ? line_no : pass.first_line.emplace(IdKey(id), line_no).first->second;
      if ((line_no - 1) % world != rank) continue;  // another rank's line (its id is tracked above)
      const bool keyed_by_line = id.is_null() || first != line_no;
      if (keyed_by_line ? answered.id_less.count(line_no) > 0 : answered.ids.count(IdKey(id)) > 0) {
        ++s.skipped;
        note_done();
        continue;
      }
      if (first != line_no) {
        BATON_RETURN_IF_ERROR(write_error(
            {line_no, nullptr, absl::StrCat("duplicate id ", IdKey(id), ", first seen on line ", first)}));
        continue;
      }
      if (p.error) {
        BATON_RETURN_IF_ERROR(write_error(*p.error));
        continue;
      }
      absl::Status added = gen.Add(ToGeneration(*p.request, config, *loaded.tokenizer, line_no));
      if (!added.ok()) {
        BATON_RETURN_IF_ERROR(write_error({line_no, id, std::string(added.message())}));
        continue;
      }
      pass.live.emplace(line_no, std::move(*p.request));
    }
    return absl::OkStatus();
  };
  BATON_RETURN_IF_ERROR(feed());
  while (!gen.idle()) {
    BATON_ASSIGN_OR_RETURN(std::vector<GenerationResult> done, gen.Step());
    for (GenerationResult& r : done) {
      auto it = pass.live.find(r.handle);
      BATON_CHECK(it != pass.live.end());
      const InferResult res{std::move(r.text), std::move(r.tokens), r.finish_reason, r.prompt_tokens, r.ttft_s,
                            r.latency_s};
      BATON_RETURN_IF_ERROR(out->Append(FormatResult(pass.format, it->second, res)));
      pass.live.erase(it);
      ++s.requests;
      s.prompt_tokens += res.prompt_tokens;
      s.completion_tokens += static_cast<int64_t>(res.tokens.size());
      s.latency_s.push_back(res.latency_s);
      s.ttft_s.push_back(res.ttft_s);
      note_done();
    }
    BATON_RETURN_IF_ERROR(feed());
  }
  if (rank == 0) progress.Finish();
  const SchedulerStats& st = gen.scheduler_stats();
  s.prefill_tokens = gen.stats().prefill_tokens;
  s.generated_tokens = gen.stats().generated_tokens;
  s.decode_tokens = gen.stats().decode_tokens;
  s.prefill_s = gen.stats().prefill_s;
  s.decode_s = gen.stats().decode_s;
  s.steps = st.steps;
  s.preemptions = st.preemptions;
  s.refills = st.refills;
  s.batch_occupancy = st.steps > 0 ? static_cast<double>(st.occupancy_sum) / st.steps / config.max_batch : 0;
  s.kv_peak_use = static_cast<double>(st.peak_blocks) / static_cast<double>(cache.num_blocks());
  s.kv_capacity_tokens = cache.capacity_tokens();
  s.peak_memory_bytes = PeakRssBytes();
  s.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  ReduceSummary(s, world);
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
