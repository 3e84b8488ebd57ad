// The planner's memory model (see plan_memory.h). Every term names the
// buffer of runtime/model.cc or launcher/rank_model.cc it mirrors, so a
// change there has one obvious place to follow here.
#include "launcher/plan_memory.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/stage_split.h"
#include "kernels/check.h"
#include "runtime/tensor_parallel.h"
#include "runtime/transformer_layer.h"

namespace baton {

const char* RecomputeName(const RecomputeConfig& rc) {
  switch (rc.policy) {
    case RecomputePolicy::kNone: return "none";
    case RecomputePolicy::kFull: return "full";
    case RecomputePolicy::kSelective: return "selective";
    case RecomputePolicy::kEveryK: return rc.every_k == 2 ? "every_2" : "every_k";
  }
  return "?";
}

std::string ToString(const PlanLayout& l) {
  std::string s = absl::StrCat("dp=", l.dp, " pp=", l.pp, " tp=", l.tp);
  if (l.virtual_stages > 1) absl::StrAppend(&s, " v=", l.virtual_stages);
  absl::StrAppend(&s, " ", ScheduleKindName(l.schedule), " mb=", l.micro_batch, "x", l.microbatches,
                  " recompute=", RecomputeName(l.recompute), " zero=", l.zero);
  if (l.sequence_parallel) absl::StrAppend(&s, " sp");
  if (!l.layers_per_part.empty()) absl::StrAppend(&s, " split=", absl::StrJoin(l.layers_per_part, "+"));
  return s;
}

// The engine's own split, so the plan prices the layout `baton train` runs.
std::vector<PartLayers> SplitParts(const ModelConfig& m, const PlanLayout& layout, int64_t seq) {
  std::vector<PartLayers> out;
  for (const ModelSlice& s : SplitLayers(m, layout.parts(), seq, layout.layers_per_part)) {
    out.push_back({s.first_layer, s.last_layer, s.embedding, s.head});
  }
  return out;
}

absl::Status CheckSplit(const ModelConfig& m, const PlanLayout& l) {
  const std::vector<int>& split = l.layers_per_part;
  if (split.empty()) return absl::OkStatus();
  if (static_cast<int>(split.size()) != l.parts()) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.layers_per_stage has ", split.size(),
                                                   " entries, but pp=", l.pp, " × virtual_stages=", l.virtual_stages,
                                                   " = ", l.parts(), " model parts"));
  }
  int64_t sum = 0;
  for (size_t i = 0; i < split.size(); ++i) {
    if (split[i] < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("parallel.layers_per_stage[", i, "]=", split[i], " must be >= 1"));
    }
    sum += split[i];
  }
  if (sum != m.layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel.layers_per_stage sums to ", sum, " layers, but model.layers=", m.layers));
  }
  return absl::OkStatus();
}

std::vector<int64_t> PartParamElements(const ModelConfig& m, const PartLayers& part, bool tied_copy, int tp) {
  const int64_t C = m.dim, V = m.vocab_size / tp, HD = int64_t{m.heads} * m.head_dim() / tp,
                KVD = int64_t{m.kv_heads} * m.head_dim() / tp, F = m.ffn_dim / tp;
  std::vector<int64_t> out;
  if (part.embedding || tied_copy) out.push_back(V * C);  // embed (vocab-parallel)
  for (int l = part.first; l < part.last; ++l) {
    out.insert(out.end(), {C, HD * C, KVD * C, KVD * C});  // attn_norm, wq, wk, wv
    if (m.qkv_bias) out.insert(out.end(), {HD, KVD, KVD});
    out.insert(out.end(), {C * HD, C, F * C, F * C, C * F});  // wo, mlp_norm, w_gate, w_up, w_down
  }
  if (part.head) {
    out.push_back(C);                               // final_norm
    if (!m.tie_embeddings) out.push_back(V * C);    // lm_head
  }
  return out;
}

namespace {

struct Sizes {
  int64_t e;   // activation element
  int64_t es;  // statistics element
};
Sizes SizesOf(const MemoryTarget& t) {
  if (t.device == Device::kCpu) return {4, 4};
  return {static_cast<int64_t>(DTypeSize(t.compute)), 4};
}

// AllocateLayerScratch (transformer_layer.cc).
int64_t ScratchBytes(const LayerDims& d, int64_t e) {
  const int64_t N = d.rows(), Nr = d.resid_rows(), C = d.dim, HD = d.heads * d.head_dim,
                KVD = d.kv_heads * d.head_dim, F = d.ffn;
  int64_t n = N * C + Nr * C + N * C + 2 * N * HD + 2 * N * KVD + 3 * N * F;  // proj dh dln datt dq dk dv dgate dup dswi
  if (d.sp()) n += Nr * C + Nr * C + N * C + Nr * C;                          // proj_r norm_r dh_full dln_r
  return n * e;
}

}  // namespace

ChunkActivations ChunkActivationBytes(const ModelConfig& m, const PartLayers& part, const PlanLayout& layout,
                                      int64_t seq, const MemoryTarget& target, bool whole) {
  const Sizes s = SizesOf(target);
  const bool cpu = target.device == Device::kCpu;
  const ActivationFormat kept{cpu ? DType::kF32 : target.compute, DType::kF32, nullptr, cpu};
  ActivationFormat no_probs = kept;
  no_probs.store_probs = false;
  TpOps tp_ops(TensorParallel{layout.tp, 0, nullptr, layout.sequence_parallel});
  const LayerDims d = LayerDims::From(m, layout.micro_batch, seq, &tp_ops);
  const int64_t N = d.rows(), Nr = d.resid_rows(), C = m.dim, V = m.vocab_size / layout.tp;
  const int64_t L = part.last - part.first;
  const int64_t head = part.head ? N * C * s.e + Nr * s.es + N * V * s.e + N * s.es : 0;  // lnf rstdf logits losses

  ChunkActivations out;
  // Model::Buffers: resid (L+1), the shared set, scratch, lnf, rstdf, logits, losses, dresid ×2.
  out.shared = (L + 1) * Nr * C * s.e + (KeptActivationBytes(d, no_probs, LayerMode::kKeepAll) - N * C * s.e) +
               ScratchBytes(d, s.e) + N * C * s.e + Nr * s.es + (part.head ? N * V * s.e : 0) + N * s.es +
               2 * Nr * C * s.e + (cpu ? 0 : 2 * N * 4);
  int64_t saved = 0;
  for (int l = part.first; l < part.last; ++l) {
    saved += KeptActivationBytes(d, kept, LayerModeOf(layout.recompute, l)) - N * C * s.e;
  }
  // pp = 1 keeps a micro-batch in Buffers::saved; a pipeline part in a Slot
  // (its own residual stream, head tensors and token copies).
  out.per_microbatch = whole ? saved : saved + (L + 1) * Nr * C * s.e + head + 2 * N * 4;
  return out;
}

int64_t DeferredWeightGradBytes(const ModelConfig& m, const PartLayers& part, const PlanLayout& layout, int64_t seq,
                                const MemoryTarget& target) {
  const int64_t e = SizesOf(target).e, N = int64_t{layout.micro_batch} * seq, C = m.dim, t = layout.tp;
  const int64_t F = m.ffn_dim / t, HD = int64_t{m.heads} * m.head_dim() / t, KVD = int64_t{m.kv_heads} * m.head_dim() / t;
  int64_t bytes = (part.last - part.first) * N * (7 * C + 3 * F + 2 * HD + 2 * KVD) * e;  // (dy, x) of 7 linears
  if (part.head) bytes += N * (m.vocab_size / t + C) * e;                                  // lm head
  return bytes;
}

absl::StatusOr<std::vector<MemoryBreakdown>> PredictStageMemory(const ModelConfig& m, const PlanLayout& layout,
                                                                int64_t seq, const MemoryTarget& target,
                                                                const std::vector<int>& peak_in_flight,
                                                                const std::vector<int>& pending_weight) {
  if (static_cast<int>(peak_in_flight.size()) != layout.pp) {
    return absl::InvalidArgumentError(
        absl::StrCat("peak_in_flight has ", peak_in_flight.size(), " stages, layout has pp=", layout.pp));
  }
  if (m.layers < layout.parts()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.layers=", m.layers, " < pp·virtual_stages=", layout.parts()));
  }
  BATON_RETURN_IF_ERROR(CheckSplit(m, layout));
  const Sizes s = SizesOf(target);
  const bool cpu = target.device == Device::kCpu;
  const int64_t weight_bytes = 4 + (!cpu && target.compute != DType::kF32 ? DTypeSize(target.compute) : 0);
  const std::vector<PartLayers> parts = SplitParts(m, layout, seq);
  const ScheduleSpec spec = layout.spec();
  const bool whole = layout.pp == 1 && layout.virtual_stages == 1;
  std::vector<MemoryBreakdown> out;
  for (int stage = 0; stage < layout.pp; ++stage) {
    MemoryBreakdown b;
    b.stage = stage;
    b.in_flight = peak_in_flight[stage];
    std::vector<int64_t> flat;  // this rank's params in RankModel's flat order (chunks, then params)
    int64_t per_mb = 0, deferred = 0;
    for (int c = 0; c < layout.virtual_stages; ++c) {
      const PartLayers& part = parts[ModelPart(spec, stage, c)];
      const bool tied_copy = m.tie_embeddings && part.head && !part.embedding;
      for (int64_t n : PartParamElements(m, part, tied_copy, layout.tp)) flat.push_back(n);
      const ChunkActivations a = ChunkActivationBytes(m, part, layout, seq, target, whole);
      b.activations += a.shared;
      per_mb = std::max(per_mb, a.per_microbatch);
      deferred = std::max(deferred, DeferredWeightGradBytes(m, part, layout, seq, target));
    }
    b.activations += per_mb * b.in_flight;
    if (!pending_weight.empty()) b.activations += deferred * pending_weight[stage];
    int64_t total = 0;
    for (int64_t n : flat) total += n;
    b.params = total;
    b.weights = total * weight_bytes;
    b.grads = total * 4;
    // AdamW m, v (f32): every param, or under ZeRO-1 (dp > 1) param k on dp
    // rank k mod dp; the busiest dp rank counts.
    int64_t owned = total;
    if (layout.zero == 1 && layout.dp > 1) {
      std::vector<int64_t> per_rank(layout.dp, 0);
      for (size_t k = 0; k < flat.size(); ++k) per_rank[k % layout.dp] += flat[k];
      owned = *std::max_element(per_rank.begin(), per_rank.end());
    }
    b.optimizer = owned * 8;
    // Gradient sums over dp: the CPU's GradSync buckets copy every grad; on
    // CUDA one in-place NCCL all-reduce of the flat grads.
    if (layout.dp > 1 && cpu) b.comm += b.grads;
    // Pipeline messages: an activation and a gradient buffer per direction.
    if (layout.pp > 1) {
      TpOps tp_ops(TensorParallel{layout.tp, 0, nullptr, layout.sequence_parallel});
      const LayerDims d = LayerDims::From(m, layout.micro_batch, seq, &tp_ops);
      b.comm += 4 * d.resid_rows() * m.dim * s.e;
    }
    b.comm += target.runtime_reserve;
    out.push_back(b);
  }
  return out;
}

absl::StatusOr<MemoryBreakdown> PredictMemory(const ModelConfig& m, const PlanLayout& layout, int64_t seq,
                                              const MemoryTarget& target, const std::vector<int>& peak_in_flight,
                                              const std::vector<int>& pending_weight) {
  absl::StatusOr<std::vector<MemoryBreakdown>> stages =
      PredictStageMemory(m, layout, seq, target, peak_in_flight, pending_weight);
  if (!stages.ok()) return stages.status();
  return *std::max_element(stages->begin(), stages->end(),
                           [](const MemoryBreakdown& a, const MemoryBreakdown& b) { return a.total() < b.total(); });
}

std::string FormatBytes(int64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.1f GB", b / 1e9);
  } else if (b >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KB", b / 1e3);
  }
  return buf;
}

}  // namespace baton
