// The run's reports (see train_report.h): banner, per-step rows and
// progress, validation, checkpoint notes, and the summary after the loop.
#include "launcher/train_report.h"

#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/cuda_allocator.h"
#include "runtime/model.h"

namespace baton {
namespace {

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

// This rank's GPU memory high-water marks (zeros on the CPU).
CudaMemoryStats GpuMemory(Device device) {
  return device == Device::kCuda ? DefaultCudaAllocator()->stats() : CudaMemoryStats{};
}

double GiB(size_t bytes) { return static_cast<double>(bytes) / (1 << 30); }

// Under mpirun rank 0's stdout may be a pty, but it ends up in a job log: lines.
Progress::Mode ProgressModeOf(ProgressMode pm, int world) {
  return pm == ProgressMode::kBar                        ? Progress::Mode::kBar
         : pm == ProgressMode::kLines || world > 1 ? Progress::Mode::kLines
                                                   : Progress::Mode::kAuto;
}

}  // namespace

double FlopsPerToken(const JobConfig& config, int64_t num_parameters) {
  const ModelConfig& m = config.model;
  const double n = static_cast<double>(num_parameters) - static_cast<double>(m.vocab_size) * m.dim;
  return 6.0 * n + 12.0 * m.layers * static_cast<double>(m.dim) * config.train.seq_len;
}

void PrintBanner(const JobConfig& config, MeshComms* comms, RankTrainer& trainer, int64_t num_parameters,
                 const Sampler& sampler) {
  const ParallelConfig& p = config.parallel;
  const int world = comms != nullptr ? comms->world->size() : 1;
  if (world > 1) {
    std::printf("mesh: dp=%d pp=%d tp=%d%s over %d ranks (MPI, p2p %s%s)\n", p.dp, p.pp, p.tp,
                p.sequence_parallel && p.tp > 1 ? " +sp" : "", world, comms->pp->backend(),
                p.zero == 1 && p.dp > 1 ? ", ZeRO-1" : "");
  }
  if (p.pp > 1) {
    std::printf("pipeline: %s; %s\n", ToString(trainer.stage().spec()).c_str(), trainer.stage().Describe().c_str());
  }
  const ModelConfig& m = config.model;
  std::printf("model: %lld parameters (%d layers, dim %d, %d heads, %d kv heads, ffn %d, vocab %d)\n",
              static_cast<long long>(num_parameters), m.layers, m.dim, m.heads, m.kv_heads, m.ffn_dim, m.vocab_size);
  const int64_t b = config.train.micro_batch_size, t = config.train.seq_len;
  std::printf("data: %s, %lld train / %lld val samples of %lld tokens; %lld micro-batches of %lld per step\n",
              config.data.path.c_str(), static_cast<long long>(sampler.num_train_samples()),
              static_cast<long long>(sampler.num_val_samples()), static_cast<long long>(t),
              static_cast<long long>(config.microbatches()), static_cast<long long>(b));
  std::printf("%s\n", ActivationReport(*trainer.models()[0], config.recompute, b, t).c_str());
  std::fflush(stdout);
}

StepReport::StepReport(const JobConfig& config, int world, bool root, Device device, double flops_per_token,
                       bool distill, MetricsWriter& metrics, TrainSummary& summary, int64_t first_step)
    : config_(config),
      root_(root),
      device_(device),
      flops_per_gpu_token_(flops_per_token / world),
      distill_(distill),
      tokens_per_step_(static_cast<int64_t>(config.train.global_batch_size) * config.train.seq_len),
      metrics_(metrics),
      summary_(summary),
      progress_(config.train.steps, config.train.log_every, ProgressModeOf(config.output.progress, world)) {
  summary_.first_step = first_step;
}

void StepReport::Step(int64_t step, const StepResult& s, double seconds) {
  if (step > summary_.first_step) {  // the first step pays for allocation
    timed_seconds_ += seconds;
    timed_tokens_ += tokens_per_step_;
  }
  if (step == summary_.first_step) summary_.first_loss = s.loss;
  summary_.last_loss = s.loss;
  if (!root_) return;
  const double tok_s = tokens_per_step_ / seconds;
  const double mfu = tok_s * flops_per_gpu_token_ / (config_.output.peak_tflops * 1e12);
  nlohmann::json row = {{"step", step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
                        {"tokens_per_s", tok_s}, {"tokens", step * tokens_per_step_}};
  if (distill_) {
    row["kl"] = s.kl;
    row["ce"] = s.ce;
  }
  if (device_ == Device::kCuda) {  // MFU against a GPU's peak; memory from the caching allocator
    const CudaMemoryStats mem = GpuMemory(device_);
    row["mfu"] = mfu;
    row["peak_allocated_gib"] = GiB(mem.peak_in_use);
    row["peak_reserved_gib"] = GiB(mem.peak_reserved);
  }
  metrics_.Write(row);
  progress_.Update(step, absl::StrFormat("loss %.4f%s  lr %.2e  gnorm %.3f  %s tok/s%s", s.loss,
                                         distill_ ? absl::StrFormat(" (kl %.4f ce %.4f)", s.kl, s.ce) : "", s.lr,
                                         s.grad_norm, HumanRate(tok_s),
                                         device_ == Device::kCuda ? absl::StrFormat("  MFU %.3f", mfu) : ""));
}

absl::Status StepReport::Validation(int64_t step, double val_loss, const EvalFigures* figures) {
  if (!root_) return absl::OkStatus();
  summary_.last_val_loss = val_loss;
  nlohmann::json v = {{"step", step}, {"val_loss", val_loss}};
  std::string more;
  if (figures != nullptr) {
    BATON_ASSIGN_OR_RETURN(const nlohmann::json f, (*figures)(summary_.checkpoint));
    for (const auto& [key, value] : f.items()) {
      v[key] = value;
      more += absl::StrFormat("  %s %.4f", key, value.get<double>());
    }
  }
  metrics_.Write(v);
  progress_.Note(absl::StrFormat("step %lld  val_loss %.4f%s", static_cast<long long>(step), val_loss, more));
  return absl::OkStatus();
}

void StepReport::Checkpoint(int64_t step) {
  if (root_) progress_.Note(absl::StrCat("step ", step, "  checkpoint ", summary_.checkpoint));
}

void StepReport::Finish(int64_t last_step) {
  if (root_) progress_.Finish();
  summary_.last_step = last_step;
  summary_.tokens_per_s = timed_seconds_ > 0 ? timed_tokens_ / timed_seconds_ : 0;
  summary_.mfu = summary_.tokens_per_s * flops_per_gpu_token_ / (config_.output.peak_tflops * 1e12);
  const CudaMemoryStats mem = GpuMemory(device_);
  summary_.peak_allocated = static_cast<int64_t>(mem.peak_in_use);
  summary_.peak_reserved = static_cast<int64_t>(mem.peak_reserved);
}

absl::Status ReportAfterLoop(const JobConfig& config, MeshComms* comms, TraceRecorder* trace,
                             const RankTrainer& trainer, bool root, TrainSummary& summary) {
  if (trace != nullptr) {
    BATON_RETURN_IF_ERROR(GatherChromeTrace(*comms->world, *trace, config.output.trace));
    if (root) std::printf("trace: %s (the last step, one row per rank)\n", config.output.trace.c_str());
  }
  summary.dp_buckets = trainer.num_buckets();
  summary.dp_buckets_early = trainer.buckets_started_early();
  if (root && summary.dp_buckets > 0) {
    std::printf("dp gradient sums: %d buckets of parallel.bucket_mb=%g, %d started during the backward\n",
                summary.dp_buckets, config.parallel.bucket_mb, summary.dp_buckets_early);
  }
  return absl::OkStatus();
}

}  // namespace baton
