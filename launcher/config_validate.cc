// Range and consistency checks on a parsed JobConfig (see config.h): the
// rules that make a config runnable, each failing with one line that names
// the key, its value and what it must be. ValidateMesh adds the rules that
// need the world size (dp·pp·tp ranks, tp dividing the model's widths).
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "launcher/config.h"
#include "launcher/distill_config.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

absl::Status AtLeast(const char* name, int64_t v, int64_t lo) {
  if (v < lo) return Bad(name, "=", v, " must be >= ", lo);
  return absl::OkStatus();
}

// Finite and > 0 (positive) or >= 0.
absl::Status NonNegative(const char* name, double v, bool strictly) {
  if (!std::isfinite(v) || v < 0 || (strictly && v == 0))
    return Bad(name, "=", v, strictly ? " must be > 0" : " must be >= 0");
  return absl::OkStatus();
}

absl::Status InUnitInterval(const char* name, double v) {  // [0, 1)
  if (!(v >= 0 && v < 1)) return Bad(name, "=", v, " must be in [0, 1)");
  return absl::OkStatus();
}

absl::Status ValidateTrain(const TrainConfig& t, const ParallelConfig& p) {
  BATON_RETURN_IF_ERROR(AtLeast("train.steps", t.steps, 1));
  BATON_RETURN_IF_ERROR(AtLeast("train.seed", t.seed, 0));
  BATON_RETURN_IF_ERROR(AtLeast("train.micro_batch_size", t.micro_batch_size, 1));
  BATON_RETURN_IF_ERROR(AtLeast("train.global_batch_size", t.global_batch_size, 1));
  BATON_RETURN_IF_ERROR(AtLeast("train.seq_len", t.seq_len, 1));
  BATON_RETURN_IF_ERROR(AtLeast("train.eval_every", t.eval_every, 0));
  BATON_RETURN_IF_ERROR(AtLeast("train.eval_batches", t.eval_batches, 1));
  BATON_RETURN_IF_ERROR(AtLeast("train.log_every", t.log_every, 1));
  BATON_RETURN_IF_ERROR(AtLeast("train.exit_interval", t.exit_interval, 0));
  if (t.device != "auto" && t.device != "cpu" && t.device != "cuda") {
    return Bad("train.device: expected one of auto|cpu|cuda, got \"", t.device, "\"");
  }
  if (t.precision != "bf16" && t.precision != "fp32") {
    return Bad("train.precision: expected one of bf16|fp32, got \"", t.precision, "\"");
  }
  const OptimizerConfig& o = t.optimizer;
  BATON_RETURN_IF_ERROR(NonNegative("train.lr", o.lr, /*strictly=*/true));
  BATON_RETURN_IF_ERROR(NonNegative("train.min_lr", o.min_lr, /*strictly=*/false));
  if (o.min_lr > o.lr) return Bad("train.min_lr=", o.min_lr, " must be <= train.lr=", o.lr);
  BATON_RETURN_IF_ERROR(AtLeast("train.warmup_steps", o.warmup_steps, 0));
  BATON_RETURN_IF_ERROR(NonNegative("train.weight_decay", o.weight_decay, /*strictly=*/false));
  BATON_RETURN_IF_ERROR(InUnitInterval("train.beta1", o.beta1));
  BATON_RETURN_IF_ERROR(InUnitInterval("train.beta2", o.beta2));
  BATON_RETURN_IF_ERROR(NonNegative("train.eps", o.eps, /*strictly=*/true));
  BATON_RETURN_IF_ERROR(NonNegative("train.grad_clip", o.grad_clip, /*strictly=*/false));
  // p.dp >= 1 is checked before this is called.
  int64_t per_step = int64_t{t.micro_batch_size} * p.dp;
  if (t.global_batch_size % per_step != 0)
    return Bad("train.global_batch_size=", t.global_batch_size, " is not a multiple of train.micro_batch_size=",
               t.micro_batch_size, " × parallel.dp=", p.dp);
  return absl::OkStatus();
}

absl::Status ValidateParallel(const ParallelConfig& p) {
  BATON_RETURN_IF_ERROR(AtLeast("parallel.dp", p.dp, 1));
  BATON_RETURN_IF_ERROR(AtLeast("parallel.pp", p.pp, 1));
  BATON_RETURN_IF_ERROR(AtLeast("parallel.tp", p.tp, 1));
  BATON_RETURN_IF_ERROR(AtLeast("parallel.virtual_stages", p.virtual_stages, 1));
  BATON_RETURN_IF_ERROR(AtLeast("parallel.microbatches", p.microbatches, 0));
  if (p.zero != 0 && p.zero != 1) return Bad("parallel.zero=", p.zero, " must be 0 or 1");
  if (!(p.bucket_mb >= 0)) return Bad("parallel.bucket_mb=", p.bucket_mb, " must be >= 0");
  if (p.p2p == P2pTransport::kNccl)
    return Bad("parallel.p2p=\"nccl\" is not implemented yet; use \"mpi\" or \"ucx\"");
  if (!(p.timeout_s > 0)) return Bad("parallel.timeout_s=", p.timeout_s, " must be > 0 (seconds)");
  bool interleaved = p.schedule == ScheduleKind::kInterleaved1F1B;
  if (interleaved && p.virtual_stages < 2)
    return Bad("parallel.virtual_stages=", p.virtual_stages, " must be >= 2 with parallel.schedule=\"interleaved\"");
  if (!interleaved && p.virtual_stages != 1)
    return Bad("parallel.virtual_stages=", p.virtual_stages, " must be 1 with parallel.schedule=\"",
               ScheduleKindName(p.schedule), "\" (only \"interleaved\" has virtual stages)");
  return absl::OkStatus();
}

std::vector<int> Divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

}  // namespace

absl::Status ValidateJobConfig(const JobConfig& c) {
  BATON_RETURN_IF_ERROR(c.model.Validate());
  if (c.data.path.empty() && !c.data.corpus.empty())
    return Bad("data.corpus is set but data.path is empty (data.path names the dataset built from it)");
  BATON_RETURN_IF_ERROR(InUnitInterval("data.val_fraction", c.data.val_fraction));
  for (size_t i = 0; i < c.data.corpus.size(); ++i) {
    if (c.data.corpus[i].empty()) return Bad("data.corpus[", i, "] is an empty string");
  }
  BATON_RETURN_IF_ERROR(ValidateParallel(c.parallel));
  BATON_RETURN_IF_ERROR(ValidateTrain(c.train, c.parallel));
  BATON_RETURN_IF_ERROR(ValidateDistillConfig(c));  // launcher/distill_config.h
  const ParallelConfig& p = c.parallel;
  if (p.microbatches != 0) {
    int derived = c.train.global_batch_size / (c.train.micro_batch_size * p.dp);
    if (p.microbatches != derived)
      return Bad("parallel.microbatches=", p.microbatches, " != train.global_batch_size=", c.train.global_batch_size,
                 " / (train.micro_batch_size=", c.train.micro_batch_size, " × parallel.dp=", p.dp, ") = ", derived,
                 " (set 0 to derive it)");
  }
  BATON_RETURN_IF_ERROR(AtLeast("recompute.every_k", c.recompute.every_k, 1));
  BATON_RETURN_IF_ERROR(AtLeast("checkpoint.every", c.checkpoint.every, 0));
  BATON_RETURN_IF_ERROR(AtLeast("checkpoint.keep", c.checkpoint.keep, 0));
  BATON_RETURN_IF_ERROR(NonNegative("output.peak_tflops", c.output.peak_tflops, /*strictly=*/true));
  if (c.checkpoint.resume.empty())
    return Bad("checkpoint.resume is empty: expected \"auto\", \"none\" or a checkpoint file");
  return absl::OkStatus();
}

absl::Status ValidateMesh(const JobConfig& c, int world_size) {
  const ParallelConfig& p = c.parallel;
  const ModelConfig& m = c.model;
  int64_t ranks = int64_t{p.dp} * p.pp * p.tp;
  if (ranks != world_size)
    return Bad("parallel.dp=", p.dp, " × parallel.pp=", p.pp, " × parallel.tp=", p.tp, " = ", ranks,
               " ranks, but the job has ", world_size);
  struct Width { const char* name; int value; };
  const Width widths[] = {{"model.heads", m.heads}, {"model.kv_heads", m.kv_heads},
                          {"model.ffn_dim", m.ffn_dim}, {"model.vocab_size", m.vocab_size}};
  int g = 0;
  for (const Width& w : widths) g = std::gcd(g, w.value);
  for (const Width& w : widths) {
    if (w.value % p.tp != 0)
      return Bad("parallel.tp=", p.tp, " does not divide ", w.name, "=", w.value, " (choose tp in ",
                 absl::StrJoin(Divisors(g), ", "), ")");
  }
  const int64_t tokens = int64_t{c.train.micro_batch_size} * c.train.seq_len;
  if (p.sequence_parallel && tokens % p.tp != 0)
    return Bad("parallel.sequence_parallel: train.micro_batch_size=", c.train.micro_batch_size,
               " × train.seq_len=", c.train.seq_len, " = ", tokens, " tokens do not split over parallel.tp=", p.tp);
  int64_t chunks = int64_t{p.pp} * p.virtual_stages;
  if (!p.layers_per_stage.empty()) {
    if (static_cast<int64_t>(p.layers_per_stage.size()) != chunks)
      return Bad("parallel.layers_per_stage has ", p.layers_per_stage.size(), " entries, but parallel.pp=", p.pp,
                 " × parallel.virtual_stages=", p.virtual_stages, " = ", chunks, " model parts");
    int64_t sum = 0;
    for (size_t i = 0; i < p.layers_per_stage.size(); ++i) {
      if (p.layers_per_stage[i] < 1) return Bad("parallel.layers_per_stage[", i, "]=", p.layers_per_stage[i], " must be >= 1");
      sum += p.layers_per_stage[i];
    }
    if (sum != m.layers) return Bad("parallel.layers_per_stage sums to ", sum, " layers, but model.layers=", m.layers);
  }
  if (m.layers < chunks) {
    if (p.virtual_stages == 1) return Bad("model.layers=", m.layers, " is fewer than parallel.pp=", p.pp, " stages");
    return Bad("model.layers=", m.layers, " is fewer than parallel.pp=", p.pp, " × parallel.virtual_stages=",
               p.virtual_stages, " = ", chunks, " model chunks");
  }
  return absl::OkStatus();
}

}  // namespace baton
