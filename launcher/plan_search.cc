// Layout enumeration and ranking for `baton plan` (see plan_search.h).
#include "launcher/plan_search.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

std::string MeshProblem(const PlanRequest& r, int dp, int pp, int tp) {
  const ModelConfig& m = r.model;
  if (tp > r.gpus_per_node) return absl::StrCat("tp=", tp, " crosses nodes (gpus-per-node ", r.gpus_per_node, ")");
  if (m.heads % tp != 0) return absl::StrCat("heads ", m.heads, " not divisible by tp ", tp);
  if (m.kv_heads % tp != 0) return absl::StrCat("kv_heads ", m.kv_heads, " not divisible by tp ", tp);
  if (m.ffn_dim % tp != 0) return absl::StrCat("ffn_dim ", m.ffn_dim, " not divisible by tp ", tp);
  if (m.vocab_size % tp != 0) return absl::StrCat("vocab_size ", m.vocab_size, " not divisible by tp ", tp);
  if (m.layers < pp) return absl::StrCat("pp=", pp, " > layers ", m.layers);
  if (r.global_batch % dp != 0) return absl::StrCat("global batch ", r.global_batch, " not divisible by dp ", dp);
  return "";
}

absl::StatusOr<PlanCandidate> EvaluateLayout(const PlanRequest& r, const PlanLayout& l, std::string* why) {
  why->clear();
  if (const std::string mesh = MeshProblem(r, l.dp, l.pp, l.tp); !mesh.empty()) {
    *why = mesh;
    return absl::InvalidArgumentError(mesh);
  }
  if (r.model.layers < l.parts()) {
    *why = absl::StrCat("layers ", r.model.layers, " < pp·v ", l.parts());
    return absl::InvalidArgumentError(*why);
  }
  if (absl::Status split = CheckSplit(r.model, l); !split.ok()) {
    *why = std::string(split.message());
    return split;
  }
  PlanCandidate c;
  c.layout = l;
  absl::StatusOr<StepPrediction> t = PredictStep(r.model, l, r.seq, r.hw, r.gpus_per_node);
  if (!t.ok()) {
    *why = std::string(t.status().message());
    return t.status();
  }
  c.time = *std::move(t);
  const MemoryTarget target{r.hw.device, r.hw.compute, r.hw.runtime_reserve};
  absl::StatusOr<MemoryBreakdown> mem = PredictMemory(r.model, l, r.seq, target, c.time.sim.peak_in_flight,
                                                     PendingWeight(l, c.time.sim));
  if (!mem.ok()) {
    *why = std::string(mem.status().message());
    return mem.status();
  }
  c.memory = *mem;
  const int64_t capacity = r.hw.device == Device::kCpu ? r.hw.memory_bytes / l.gpus() : r.hw.memory_bytes;
  if (c.memory.total() > capacity) {
    *why = absl::StrCat("does not fit: ", FormatBytes(c.memory.total()), " > ", FormatBytes(capacity));
  }
  return c;
}

namespace {

std::vector<RecomputeConfig> Policies() {
  std::vector<RecomputeConfig> out(4);
  out[0].policy = RecomputePolicy::kNone;
  out[1].policy = RecomputePolicy::kSelective;
  out[2].policy = RecomputePolicy::kEveryK;
  out[2].every_k = 2;
  out[3].policy = RecomputePolicy::kFull;
  return out;
}

// (schedule, virtual stages) pairs worth pricing for pp stages.
std::vector<std::pair<ScheduleKind, int>> Schedules(int pp) {
  if (pp == 1) return {{ScheduleKind::k1F1B, 1}};
  return {{ScheduleKind::k1F1B, 1},
          {ScheduleKind::kInterleaved1F1B, 2},
          {ScheduleKind::kInterleaved1F1B, 4},
          {ScheduleKind::kZeroBubbleH1, 1}};
}

}  // namespace

absl::StatusOr<PlanResult> SearchLayouts(const PlanRequest& r) {
  if (r.gpus < 1 || r.gpus_per_node < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--gpus ", r.gpus, " and --gpus-per-node ", r.gpus_per_node,
                                                   " must be >= 1"));
  }
  if (r.global_batch < 1) return absl::InvalidArgumentError("train.global_batch_size must be >= 1");
  if (!r.layers_per_part.empty()) {  // what no layout can mend: checked on the layout it was written for
    PlanLayout own;
    own.pp = static_cast<int>(r.layers_per_part.size());
    own.layers_per_part = r.layers_per_part;
    BATON_RETURN_IF_ERROR(CheckSplit(r.model, own));
  }
  PlanResult out;
  out.capacity = r.hw.memory_bytes;
  for (int tp = 1; tp <= r.gpus; tp *= 2) {
    if (r.gpus % tp != 0) continue;
    for (int pp = 1; pp <= r.gpus / tp; ++pp) {
      if ((r.gpus / tp) % pp != 0) continue;
      const int dp = r.gpus / tp / pp;
      PlanLayout base;
      base.dp = dp, base.pp = pp, base.tp = tp;
      base.sequence_parallel = tp > 1;
      if (const std::string why = MeshProblem(r, dp, pp, tp); !why.empty()) {
        out.rejected.push_back({base, why});
        continue;
      }
      const int per_replica = r.global_batch / dp;
      for (int mb = 1; mb <= std::min(per_replica, r.max_micro_batch); mb *= 2) {
        if (per_replica % mb != 0) continue;
        for (const auto& [kind, v] : Schedules(pp)) {
          for (const RecomputeConfig& rc : Policies()) {
            for (int zero = 0; zero <= (dp > 1 ? 1 : 0); ++zero) {
              PlanLayout l = base;
              l.micro_batch = mb;
              l.microbatches = per_replica / mb;
              l.schedule = kind;
              l.virtual_stages = v;
              l.recompute = rc;
              l.zero = zero;
              l.layers_per_part = r.layers_per_part;
              if (!l.layers_per_part.empty() && static_cast<int>(l.layers_per_part.size()) != l.parts()) {
                out.rejected.push_back({l, std::string(CheckSplit(r.model, l).message()), 0, true});
                continue;
              }
              std::string why;
              absl::StatusOr<PlanCandidate> c = EvaluateLayout(r, l, &why);
              if (why.empty() && c.ok()) {
                out.fits.push_back(*std::move(c));
              } else {
                out.rejected.push_back({l, why.empty() ? std::string(c.status().message()) : why,
                                        c.ok() ? c->memory.total() : 0});
              }
            }
          }
        }
      }
    }
  }
  std::stable_sort(out.fits.begin(), out.fits.end(), [](const PlanCandidate& a, const PlanCandidate& b) {
    if (a.time.step != b.time.step) return a.time.step < b.time.step;
    return a.memory.total() < b.memory.total();
  });
  return out;
}

}  // namespace baton
