// Batch-inference benchmark: greedy decode of B prompts of P random tokens,
// N new tokens each, through the same generation loop as `baton infer`
// (continuous batching, paged KV cache), on a random model of a preset
// shape. Prints a table and, with --json, one JSON object per batch size:
// generated tokens/s, per-token (decode-step) latency, P99 request
// latency, and the fraction of the memory roofline — the bytes a decode
// step must read (weights in the compute dtype + the KV cache of every
// running sequence) over the step time, divided by the device-to-device
// copy bandwidth measured in the same run.
//   infer_bench --preset tiny|1.3b|8b [--device cpu|cuda] [--batch 1,8,64,256]
//               [--prompt 128] [--new 256] [--cuda_graphs 1|0] [--json FILE]
// --cuda_graphs 0 runs every decode step eagerly (the before/after of the graphs).
// 1.3b is train_bench's 1.3B Llama shape; 8b is Llama-3-8B's (GQA 32/8, vocab 128256).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/batch_generator.h"
#include "runtime/model.h"

#ifdef BATON_HAVE_CUDA
#include "runtime/cuda_allocator.h"
#endif

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;

ModelConfig Preset(const std::string& name) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.tie_embeddings = false;
  c.norm_eps = 1e-6f;
  if (name == "tiny") {
    c.dim = 128, c.layers = 4, c.heads = 4, c.kv_heads = 2, c.ffn_dim = 352, c.vocab_size = 258;
  } else if (name == "1.3b") {
    c.dim = 2048, c.layers = 24, c.heads = 16, c.kv_heads = 16, c.ffn_dim = 5504;
  } else if (name == "8b") {
    c.dim = 4096, c.layers = 32, c.heads = 32, c.kv_heads = 8, c.ffn_dim = 14336, c.vocab_size = 128256;
    c.rope_theta = 500000.0;
  } else {
    std::fprintf(stderr, "infer_bench: error: --preset %s (choose tiny, 1.3b or 8b)\n", name.c_str());
    std::exit(2);
  }
  return c;
}

// Bytes per second of a large device-to-device (or host) copy.
double CopyBandwidth(Allocator* alloc) {
  // f32 elements per buffer: 1 GiB on a GPU (far past its caches), 128 MiB on a host.
  const int64_t n = alloc->device() == Device::kCpu ? int64_t{1} << 25 : int64_t{1} << 28;
  Tensor a = Tensor::Empty({n}, DType::kF32, alloc), b = Tensor::Empty({n}, DType::kF32, alloc);
  a.Zero();
  b.CopyFrom(a);  // warm up
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const Clock::time_point t0 = Clock::now();
    b.CopyFrom(a);
    Tensor probe = Tensor::Empty({1}, DType::kF32);  // a host copy syncs the stream
    probe.CopyFrom(b.Slice(0, 1));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(a.nbytes()) / s);  // read + write
  }
  return best;
}

// One batch size: B prompts prefilled in one step, then greedy decode.
struct Row {
  bool ok = false;
  double tok_s = 0, step_s = 0, p99_s = 0;
  double kv_bytes = 0;  // mean KV bytes a decode step reads: every sequence its whole cache
};

Row RunBatch(Model& model, Allocator* alloc, int B, int prompt, int new_tokens, bool graphs) {
  Row row;
  const ModelConfig& c = model.config();
  const KvCacheShape shape = KvCacheShape::For(c, model.dtype(), 16);
  const int64_t blocks = B * BlocksForTokens(prompt + new_tokens, 16) + 1;
  absl::StatusOr<KvCache> cache = KvCache::Create(shape, blocks, alloc);
  absl::StatusOr<DecodeModel> dm = cache.ok() ? DecodeModel::Create(model, *cache) : cache.status();
  if (!dm.ok()) {
    std::fprintf(stderr, "infer_bench: error: %s\n", dm.status().ToString().c_str());
    return row;
  }
  dm->set_cuda_graphs(graphs);
  BatchGenerator gen(*dm, *cache, nullptr, {.max_batch = B, .max_prefill_tokens = int64_t{B} * prompt},
                     prompt + new_tokens);
  uint64_t s = 99;
  for (int r = 0; r < B; ++r) {
    GenerationRequest req;
    req.handle = r;
    for (int t = 0; t < prompt; ++t) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      req.prompt.push_back(static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab_size)));
    }
    req.max_new_tokens = new_tokens;
    req.sampling.temperature = 0;
    req.stop_at_eos = false;
    if (!gen.Add(std::move(req)).ok()) return row;
  }
  std::vector<double> latency;
  const Clock::time_point t0 = Clock::now();
  while (!gen.idle()) {
    absl::StatusOr<std::vector<GenerationResult>> done = gen.Step();
    if (!done.ok()) {
      std::fprintf(stderr, "infer_bench: error: %s\n", done.status().ToString().c_str());
      return row;
    }
    for (const GenerationResult& r : *done) latency.push_back(r.latency_s);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!dm->graphs_status().ok()) {  // the numbers are then those of eager steps
    std::fprintf(stderr, "infer_bench: warning: a CUDA graph fell back to eager steps: %s\n",
                 dm->graphs_status().ToString().c_str());
  }
  const int64_t decode_steps = gen.scheduler_stats().steps - 1;  // the first step prefills every prompt
  row.step_s = decode_steps > 0 ? gen.stats().decode_s / decode_steps : 0;
  row.kv_bytes = static_cast<double>(B) * (prompt + new_tokens / 2.0) * shape.BytesPerBlock() / 16;
  std::sort(latency.begin(), latency.end());
  row.p99_s = latency.empty() ? 0 : latency[static_cast<size_t>(0.99 * (latency.size() - 1))];
  row.tok_s = gen.stats().generated_tokens / wall;
  row.ok = true;
  return row;
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  for (size_t at = 0; at < s.size();) {
    const size_t comma = s.find(',', at);
    out.push_back(std::atoi(s.substr(at, comma - at).c_str()));
    at = comma == std::string::npos ? s.size() : comma + 1;
  }
  return out;
}

int Main(int argc, char** argv) {
  std::string preset = "tiny", device_name = "cpu", json_path, batches = "1,8,64";
  int prompt = 128, new_tokens = 256, graphs = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--preset") preset = v;
    else if (a == "--device") device_name = v;
    else if (a == "--batch") batches = v;
    else if (a == "--prompt") prompt = std::atoi(v.c_str());
    else if (a == "--new") new_tokens = std::atoi(v.c_str());
    else if (a == "--json") json_path = v;
    else if (a == "--cuda_graphs") graphs = std::atoi(v.c_str());
    else { std::fprintf(stderr, "infer_bench: error: unknown flag %s\n", a.c_str()); return 2; }
  }
  const ModelConfig c = Preset(preset);
  const Device device = device_name == "cuda" ? Device::kCuda : Device::kCpu;
  const DType dtype = device == Device::kCuda ? DType::kBF16 : DType::kF32;
  Allocator* alloc = DefaultCpuAllocator();
#ifdef BATON_HAVE_CUDA
  if (device == Device::kCuda) alloc = DefaultCudaAllocator();
#endif
  if (device == Device::kCuda && CudaDeviceCount() == 0) {
    std::fprintf(stderr, "infer_bench: error: --device cuda: %s\n", CudaDeviceSummary().c_str());
    return 2;
  }
  absl::StatusOr<Model> model = Model::Create(c, dtype, device);
  if (!model.ok()) { std::fprintf(stderr, "infer_bench: error: %s\n", model.status().ToString().c_str()); return 1; }
  model->Init(1234);
  int64_t weight_bytes = 0;
  for (const Param& p : model->params()) weight_bytes += p.value.numel() * static_cast<int64_t>(DTypeSize(dtype));
  const double bandwidth = CopyBandwidth(alloc);
  std::printf(
      "infer_bench: preset %s on %s (%s), %.2f GB of weights, copy bandwidth %.0f GB/s, prompt %d, new %d, cuda graphs %s\n",
      preset.c_str(), device == Device::kCuda ? CudaDeviceSummary().c_str() : "the CPU", DTypeName(dtype),
      weight_bytes / 1e9, bandwidth / 1e9, prompt, new_tokens, graphs != 0 && device == Device::kCuda ? "on" : "off");
  std::printf("%6s %12s %14s %14s %12s %10s\n", "batch", "tok/s", "ms/token-step", "P99 req (s)", "KV GB/step", "roofline");
  std::FILE* json = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  for (int B : ParseList(batches)) {
    const Row row = RunBatch(*model, alloc, B, prompt, new_tokens, graphs != 0);
    if (!row.ok) return 1;
    const double roofline = row.step_s > 0 ? (weight_bytes + row.kv_bytes) / row.step_s / bandwidth : 0;
    std::printf("%6d %12.0f %14.3f %14.3f %12.3f %9.1f%%\n", B, row.tok_s, row.step_s * 1e3, row.p99_s,
                row.kv_bytes / 1e9, 100 * roofline);
    if (json != nullptr) {
      std::fprintf(json,
                   "{\"impl\": \"baton\", \"preset\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, "
                   "\"cuda_graphs\": %s, \"prompt\": %d, \"new\": %d, \"tokens_per_s\": %.1f, \"ms_per_step\": %.4f, \"p99_latency_s\": %.4f, "
                   "\"weight_bytes\": %lld, \"kv_bytes_per_step\": %.0f, \"copy_bandwidth\": %.0f, \"roofline\": %.4f}\n",
                   preset.c_str(), device_name.c_str(), DTypeName(dtype), B,
                   graphs != 0 && device == Device::kCuda ? "true" : "false", prompt, new_tokens, row.tok_s,
                   row.step_s * 1e3, row.p99_s, static_cast<long long>(weight_bytes), row.kv_bytes, bandwidth, roofline);
    }
  }
  if (json != nullptr) std::fclose(json);
  return 0;
}

}  // namespace
}  // namespace baton

int main(int argc, char** argv) { return baton::Main(argc, argv); }
