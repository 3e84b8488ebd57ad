// train_bench: trains a Llama config on one GPU with synthetic random tokens
// and reports tokens/s, step time, MFU, peak memory and the time from
// launch to the first finished step, for each recompute policy asked for.
// MFU = flops/token · tokens/s over a bf16 GEMM peak measured in the same
// run (cuBLASLt, 8192³, bf16 in, fp32 accumulate), flops/token =
// 6·N_non-embedding + 12·L·d·seq (N_non-embedding counts lm_head, not the
// input embedding). Prints a table, writes JSON (--json). A benchmark, not
// a test: nothing here asserts speed.
//   train_bench --preset 125m|1.3b [--steps M] [--warmup N]
//               [--recompute none|full|selective|every_k|all] [--json FILE]
//               [--batch B] [--seq T] [--layers L] [--profile] [--gemm-autotune]
// --gemm-autotune: time up to 8 cuBLASLt algorithms per GEMM shape on its
// first call and keep the fastest (kernels/cuda/gemm.h; off by default).
// --attention auto|flash|cudnn: the attention kernels (kernels/cuda/attention.h;
// auto = the op table's rule).
// --profile: also time one step op by op (CUDA events, runtime/op_profile.h)
// and print where the step's GPU time goes, GEMMs next to their ideal time
// at the GEMM peak measured in the same run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/stream.h"
#include "kernels/gpu.h"
#include "runtime/cuda_allocator.h"
#include "runtime/model.h"
#include "runtime/op_profile.h"
#include "runtime/ops.h"
#include "runtime/optimizer.h"

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Options {
  std::string preset = "125m";
  int steps = 10, warmup = 3;
  std::string recompute = "none";
  std::string json;
  int64_t batch = 0, seq = 0;
  int layers = 0;
  bool profile = false;
  bool gemm_autotune = false;
  std::string attention = "auto";
};

struct Preset {
  ModelConfig model;
  int64_t batch, seq;
};

Preset MakePreset(const std::string& name) {
  Preset p;
  ModelConfig& c = p.model;
  c.vocab_size = 32000;
  c.tie_embeddings = false;  // HF LlamaConfig default
  c.norm_eps = 1e-6f;
  if (name == "125m") {
    c.dim = 768, c.layers = 12, c.heads = 12, c.kv_heads = 12, c.ffn_dim = 2048;
    p.batch = 16, p.seq = 1024;
  } else if (name == "1.3b") {
    c.dim = 2048, c.layers = 24, c.heads = 16, c.kv_heads = 16, c.ffn_dim = 5504;
    p.batch = 4, p.seq = 2048;
  } else {
    std::fprintf(stderr, "train_bench: error: --preset %s (choose 125m or 1.3b)\n", name.c_str());
    std::exit(2);
  }
  return p;
}

void Die(const absl::Status& st) {
  if (st.ok()) return;
  std::fprintf(stderr, "train_bench: error: %s\n", st.ToString().c_str());
  std::exit(1);
}

// bf16 GEMM peak in TFLOP/s: median of 20 timed 8192³ products on random
// (never zero) data.
double MeasureGemmPeak() {
  const int64_t n = 8192;
  Allocator* alloc = DefaultCudaAllocator();
  Tensor host = Tensor::Empty({n * n}, DType::kF32);
  uint32_t s = 12345;
  for (int64_t i = 0; i < n * n; ++i) {
    s = s * 1664525u + 1013904223u;
    host.data<float>()[i] = static_cast<float>(static_cast<int32_t>(s >> 8) % 2001 + 1) * 1e-3f;
  }
  Tensor f32 = Tensor::Empty({n * n}, DType::kF32, alloc);
  f32.CopyFrom(host);
  Tensor a = Tensor::Empty({n * n}, DType::kBF16, alloc), b = Tensor::Empty({n * n}, DType::kBF16, alloc);
  Tensor c = Tensor::Empty({n * n}, DType::kBF16, alloc);
  Die(ops::Convert(f32, a));
  Die(ops::Convert(f32, b));
  cudaStream_t st = cuda::CurrentStream();
  cuda::GemmArgs g{cuda::Float::kBF16, cuda::Float::kBF16, false, true, n, n, n, 1.f, 0.f,
                   a.raw(), n, b.raw(), n, c.raw(), n, nullptr};
  for (int i = 0; i < 3; ++i) Die(cuda::Gemm(g, st));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> tf;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(e0, st);
    Die(cuda::Gemm(g, st));
    cudaEventRecord(e1, st);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    tf.push_back(2.0 * n * n * n / (ms * 1e-3) / 1e12);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(tf.begin(), tf.end());
  return tf[tf.size() / 2];
}

bool ParsePolicy(const std::string& s, RecomputeConfig* rc) {
  if (s == "none") *rc = {RecomputePolicy::kNone, 2};
  else if (s == "full") *rc = {RecomputePolicy::kFull, 2};
  else if (s == "selective") *rc = {RecomputePolicy::kSelective, 2};
  else if (s == "every_k") *rc = {RecomputePolicy::kEveryK, 2};
  else return false;
  return true;
}

struct Result {
  std::string policy;
  double step_s = 0, tokens_per_s = 0, mfu = 0, loss_first = 0, loss_last = 0;
  double peak_gib = 0, reserved_gib = 0, activation_gib = 0;
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "train_bench: error: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--preset") o.preset = next();
    else if (a == "--steps") o.steps = std::atoi(next().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(next().c_str());
    else if (a == "--recompute") o.recompute = next();
    else if (a == "--json") o.json = next();
    else if (a == "--batch") o.batch = std::atoll(next().c_str());
    else if (a == "--seq") o.seq = std::atoll(next().c_str());
    else if (a == "--layers") o.layers = std::atoi(next().c_str());
    else if (a == "--profile") o.profile = true;
    else if (a == "--gemm-autotune") o.gemm_autotune = true;
    else if (a == "--attention") o.attention = next();
    else {
      std::fprintf(stderr, "train_bench: error: unknown flag %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.steps < 1 || o.warmup < 0) {
    std::fprintf(stderr, "train_bench: error: --steps must be >= 1, --warmup >= 0\n");
    std::exit(2);
  }
  return o;
}

int Main(int argc, char** argv) {
  const Clock::time_point launch = Clock::now();
  const Options o = Parse(argc, argv);
  Preset p = MakePreset(o.preset);
  if (o.batch > 0) p.batch = o.batch;
  if (o.seq > 0) p.seq = o.seq;
  if (o.layers > 0) p.model.layers = o.layers;
  std::vector<std::string> policies;
  if (o.recompute == "all") {
    policies = {"none", "full", "selective"};
  } else {
    policies = {o.recompute};
  }
  for (const std::string& s : policies) {
    RecomputeConfig rc;
    if (!ParsePolicy(s, &rc)) {
      std::fprintf(stderr, "train_bench: error: --recompute %s (none|full|selective|every_k|all)\n",
                   s.c_str());
      return 2;
    }
  }
  if (CudaDeviceCount() == 0) {
    std::fprintf(stderr, "train_bench: error: no GPU: %s\n", CudaDeviceSummary().c_str());
    return 1;
  }
  CudaCachingAllocator* alloc = DefaultCudaAllocator();
  cuda::SetGemmAutotune(o.gemm_autotune);
  if (o.attention == "flash") {
    cuda::SetAttentionBackend(cuda::AttentionBackend::kFlash);
  } else if (o.attention == "cudnn") {
    cuda::SetAttentionBackend(cuda::AttentionBackend::kCudnn);
  } else if (o.attention != "auto") {
    std::fprintf(stderr, "train_bench: error: --attention %s (auto|flash|cudnn)\n", o.attention.c_str());
    return 2;
  }
  const double t_cuda = Seconds(launch, Clock::now());
  const ModelConfig& c = p.model;
  const int64_t B = p.batch, T = p.seq, tokens_per_step = B * T;

  absl::StatusOr<Model> created = Model::Create(c, DType::kBF16, Device::kCuda);
  Die(created.status());
  Model model = std::move(*created);
  const double t_create = Seconds(launch, Clock::now());
  // cuDNN's plans for this shape compile on a helper thread while the host
  // draws the weights (Model::PrepareKernelsAsync), not in the first step.
  std::future<absl::Status> prepared = model.PrepareKernelsAsync(p.batch, p.seq);
  model.Init(1234);
  Die(prepared.get());
  const double t_init = Seconds(launch, Clock::now());
  const int64_t n_params = model.NumParameters();
  const int64_t n_non_embedding = n_params - int64_t{c.vocab_size} * c.dim;
  const double flops_per_token =
      6.0 * static_cast<double>(n_non_embedding) + 12.0 * c.layers * c.dim * static_cast<double>(T);

  // Synthetic data: a few random batches on the device, used in turn.
  std::vector<Tensor> batches;
  uint64_t s = 42;
  for (int i = 0; i < 4; ++i) {
    Tensor h = Tensor::Empty({B, T + 1}, DType::kI32);
    for (int64_t j = 0; j < h.numel(); ++j) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      h.data<int32_t>()[j] = static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab_size));
    }
    Tensor tok = Tensor::Empty({B, T}, DType::kI32), tgt = Tensor::Empty({B, T}, DType::kI32);
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(tok.data<int32_t>() + b * T, h.data<int32_t>() + b * (T + 1), T * 4);
      std::memcpy(tgt.data<int32_t>() + b * T, h.data<int32_t>() + b * (T + 1) + 1, T * 4);
    }
    batches.push_back(tok.Clone(alloc));
    batches.push_back(tgt.Clone(alloc));
  }

  OptimizerConfig oc;
  oc.lr = 3e-4f;
  AdamWOptimizer opt(oc);
  double first_step_s = -1;
  int step_index = 0;
  auto step = [&](const RecomputeConfig& rc) {
    const int k = step_index++ % 4;
    model.ZeroGrad();
    const double loss =
        model.ForwardBackward(batches[2 * k], batches[2 * k + 1], 1.0 / tokens_per_step, rc);
    float clip_scale = 1.0f;
    Die(GradNormFlat(model.flat_grads(), oc.grad_clip, &clip_scale).status());
    Die(opt.Step(model.params(), oc.lr, clip_scale));
    return loss / static_cast<double>(tokens_per_step);
  };

  std::vector<Result> results;
  for (const std::string& name : policies) {
    RecomputeConfig rc;
    ParsePolicy(name, &rc);
    Result r;
    r.policy = name;
    model.ReleaseActivations();  // the previous policy's buffers must not count
    Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
    alloc->ResetPeak();
    for (int i = 0; i < o.warmup; ++i) {
      const double l = step(rc);
      if (first_step_s < 0) {
        Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
        first_step_s = Seconds(launch, Clock::now());
      }
      if (i == 0) r.loss_first = l;
    }
    Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < o.steps; ++i) {
      r.loss_last = step(rc);
      if (first_step_s < 0) {
        Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
        first_step_s = Seconds(launch, Clock::now());
      }
    }
    Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
    r.step_s = Seconds(t0, Clock::now()) / o.steps;
    r.tokens_per_s = static_cast<double>(tokens_per_step) / r.step_s;
    const CudaMemoryStats ms = alloc->stats();
    r.peak_gib = static_cast<double>(ms.peak_in_use) / (1 << 30);
    r.reserved_gib = static_cast<double>(ms.peak_reserved) / (1 << 30);
    int64_t act = 0;
    for (int64_t b : model.ActivationBytesPerLayer(rc, B, T)) act += b;
    r.activation_gib = static_cast<double>(act) / (1 << 30);
    results.push_back(r);
  }

  // One more step of the first policy, op by op.
  std::vector<op_profile::Row> profile;
  double profiled_step_ms = 0;
  if (o.profile) {
    RecomputeConfig rc;
    ParsePolicy(policies.front(), &rc);
    Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
    op_profile::Collect();  // drop anything recorded before
    op_profile::Enable(true);
    const Clock::time_point t0 = Clock::now();
    step(rc);
    Die(FromCuda(cudaDeviceSynchronize(), "sync", __FILE__, __LINE__));
    profiled_step_ms = Seconds(t0, Clock::now()) * 1e3;
    op_profile::Enable(false);
    profile = op_profile::Collect();
  }

  // After training, so it does not delay the first step.
  const double peak_tflops = MeasureGemmPeak();
  for (Result& r : results) r.mfu = flops_per_token * r.tokens_per_s / (peak_tflops * 1e12);
  if (!profile.empty()) {
    double total = 0, gemm = 0;
    for (const op_profile::Row& r : profile) {
      total += r.ms;
      if (r.name.rfind("gemm", 0) == 0) gemm += r.ms;
    }
    // Linear layers (non-embedding params) and the lm head: 6 flops per weight per token.
    const double gemm_flops = 6.0 * (static_cast<double>(n_non_embedding) + static_cast<double>(c.vocab_size) * c.dim) *
                              static_cast<double>(tokens_per_step);
    const double ideal_ms = gemm_flops / (peak_tflops * 1e12) * 1e3;
    std::printf("\nper-op profile, one %s step of %s (recompute %s): %.2f ms wall, %.2f ms in ops\n",
                "training", o.preset.c_str(), policies.front().c_str(), profiled_step_ms, total);
    std::printf("| %-24s | %6s | %9s | %6s |\n", "op", "calls", "ms", "%");
    for (const op_profile::Row& r : profile) {
      std::printf("| %-24s | %6lld | %9.3f | %5.1f%% |\n", r.name.c_str(), static_cast<long long>(r.calls), r.ms,
                  100.0 * r.ms / total);
    }
    std::printf("GEMMs: %.2f ms measured vs %.2f ms ideal at the measured %.0f TFLOP/s (%.0f%% of peak); "
                "everything else: %.2f ms; host gaps (wall - ops): %.2f ms\n",
                gemm, ideal_ms, peak_tflops, 100.0 * ideal_ms / gemm, total - gemm, profiled_step_ms - total);
  }

  std::printf("\n%s | %s%s | %s\n", CudaDeviceSummary().c_str(),
              (std::string(o.gemm_autotune ? "[gemm autotune] " : "") + "[attention " + o.attention + "] ").c_str(),
              absl::StrFormat("baton %s: d%d L%d H%d ffn%d V%d, B%d T%d, %.1fM params (%.1fM non-emb)",
                              o.preset, c.dim, c.layers, c.heads, c.ffn_dim, c.vocab_size, B, T,
                              n_params / 1e6, n_non_embedding / 1e6).c_str(),
              absl::StrFormat("bf16 GEMM peak %.0f TFLOP/s, %.3g GFLOP/token, first step at %.2f s",
                              peak_tflops, flops_per_token / 1e9, first_step_s).c_str());
  std::printf("launch to first step: CUDA ready %.2f s, model created %.2f s, initialised %.2f s, first step done %.2f s\n",
              t_cuda, t_create, t_init, first_step_s);
  std::printf("| %-18s | %-10s | %10s | %10s | %6s | %9s | %9s | %9s | %8s | %8s |\n", "impl",
              "recompute", "tokens/s", "step ms", "MFU", "peak GiB", "resvd GiB", "act GiB",
              "loss0", "lossN");
  const Result& base = results.front();
  for (const Result& r : results) {
    std::printf("| %-18s | %-10s | %10.0f | %10.2f | %6.3f | %9.2f | %9.2f | %9.2f | %8.4f | %8.4f |\n",
                ("baton " + o.preset).c_str(), r.policy.c_str(), r.tokens_per_s, r.step_s * 1e3,
                r.mfu, r.peak_gib, r.reserved_gib, r.activation_gib, r.loss_first, r.loss_last);
  }
  for (const Result& r : results) {
    if (&r == &base) continue;
    std::printf("recompute %s vs %s: time %+.1f%%, peak memory %+.2f GiB, activations %+.1f%%\n",
                r.policy.c_str(), base.policy.c_str(), 100.0 * (r.step_s / base.step_s - 1),
                r.peak_gib - base.peak_gib,
                100.0 * (r.activation_gib / base.activation_gib - 1));
  }

  if (!o.json.empty()) {
    std::string j = absl::StrFormat(
        "{\"impl\": \"baton\", \"preset\": \"%s\", \"device\": \"%s\", \"batch\": %d, \"seq\": %d, "
        "\"params\": %d, \"non_embedding_params\": %d, \"flops_per_token\": %.6g, "
        "\"gemm_peak_tflops\": %.2f, \"time_to_first_step_s\": %.3f, \"warmup\": %d, \"steps\": %d, "
        "\"gemm_autotune\": %s, \"results\": [",
        o.preset, CudaDeviceSummary(), B, T, n_params, n_non_embedding, flops_per_token,
        peak_tflops, first_step_s, o.warmup, o.steps, o.gemm_autotune ? "true" : "false");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      absl::StrAppend(&j, i ? ", " : "",
                      absl::StrFormat("{\"recompute\": \"%s\", \"tokens_per_s\": %.1f, "
                                      "\"step_ms\": %.3f, \"mfu\": %.4f, \"peak_gib\": %.3f, "
                                      "\"reserved_gib\": %.3f, \"activation_gib\": %.3f, "
                                      "\"loss_first\": %.5f, \"loss_last\": %.5f}",
                                      r.policy, r.tokens_per_s, r.step_s * 1e3, r.mfu, r.peak_gib,
                                      r.reserved_gib, r.activation_gib, r.loss_first, r.loss_last));
    }
    absl::StrAppend(&j, "]}\n");
    FILE* f = std::fopen(o.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "train_bench: error: cannot write %s\n", o.json.c_str());
      return 1;
    }
    std::fputs(j.c_str(), f);
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace baton

int main(int argc, char** argv) { return baton::Main(argc, argv); }
