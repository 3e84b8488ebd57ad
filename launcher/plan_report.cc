// Tables, JSON and timelines of `baton plan` (see plan_report.h).
#include "launcher/plan_report.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace baton {

std::string ModelSummary(const ModelConfig& m) {
  const double C = m.dim, HD = double(m.heads) * m.head_dim(), KVD = double(m.kv_heads) * m.head_dim();
  const double params = m.layers * (C * HD + 2 * C * KVD + HD * C + 3 * C * m.ffn_dim + 2 * C) +
                        double(m.vocab_size) * C * (m.tie_embeddings ? 1 : 2) + C;
  return absl::StrFormat("%.2fB params, %d layers, dim %d, heads %d/%d, ffn %d, vocab %d%s", params / 1e9, m.layers,
                         m.dim, m.heads, m.kv_heads, m.ffn_dim, m.vocab_size, m.tie_embeddings ? ", tied" : "");
}

namespace {

// Memory columns in `unit` bytes (1e9: GB, 1e6: MB).
std::string Gb(int64_t b, double unit) {
  // Two literal formats: clang checks absl::StrFormat's format at compile time.
  return unit == 1e9 ? absl::StrFormat("%.1f", b / unit) : absl::StrFormat("%.2f", b / unit);
}

std::string Row(int rank, const PlanCandidate& c, double unit) {
  const PlanLayout& l = c.layout;
  const MemoryBreakdown& m = c.memory;
  return absl::StrFormat("%4d %4d %3d %3d %2d %-11s %3dx%-4d %-9s %4d %9.2f %11.0f %5.1f%% %5.1f%% %7s = %s+%s+%s+%s+%s\n",
                         rank, l.dp, l.pp, l.tp, l.virtual_stages, ScheduleKindName(l.schedule), l.micro_batch,
                         l.microbatches, RecomputeName(l.recompute), l.zero, 1e3 * c.time.step, c.time.tokens_per_s,
                         100 * c.time.mfu, 100 * c.time.bubble, Gb(m.total(), unit), Gb(m.weights, unit),
                         Gb(m.grads, unit), Gb(m.optimizer, unit), Gb(m.activations, unit), Gb(m.comm, unit));
}

std::string MeshName(const PlanLayout& l) { return absl::StrCat("dp=", l.dp, " pp=", l.pp, " tp=", l.tp); }

std::string SplitName(const std::vector<int>& split) {
  return absl::StrCat("parallel.layers_per_stage=[", absl::StrJoin(split, ", "), "]");
}

// The job's explicit split: what it applies to, and how many searched
// layouts it ruled out ("" without one).
std::string SplitNote(const PlanRequest& r, const PlanResult& res) {
  if (r.layers_per_part.empty()) return "";
  int skipped = 0;
  for (const PlanRejection& rj : res.rejected) skipped += rj.split ? 1 : 0;
  std::string note = absl::StrCat("split: ", SplitName(r.layers_per_part), " prices every layout of pp·virtual_stages=",
                                  r.layers_per_part.size(), " model parts");
  if (skipped > 0) {
    absl::StrAppend(&note, "; ", skipped, " searched layouts with other pp·virtual_stages cannot use it and are "
                    "skipped (the engine refuses them; drop the key to plan them with the balanced split)");
  }
  return note + "\n";
}

}  // namespace

std::string FormatPlanTable(const PlanHeader& h, const PlanRequest& r, const PlanResult& res, int top) {
  std::string out = absl::StrFormat(
      "baton plan: %s on %d x %s (%d per node), seq %d, global batch %d sequences (%d tokens)\n"
      "model: %s\nprofile: %s\n\n",
      h.config, h.gpus, r.hw.name, h.gpus_per_node, h.seq, h.global_batch, h.seq * h.global_batch, h.model,
      r.hw.source);
  if (const std::string note = SplitNote(r, res); !note.empty()) absl::StrAppend(&out, note, "\n");
  if (res.fits.empty()) {
    absl::StrAppend(&out, "no layout fits.\n");
  } else {
    absl::StrAppend(&out, absl::StrFormat("%d of %d layouts fit; the fastest %d:\n", res.fits.size(),
                                          res.fits.size() + res.rejected.size(),
                                          std::min<size_t>(top, res.fits.size())));
    int64_t largest = 0;
    for (int i = 0; i < std::min<int>(top, res.fits.size()); ++i) largest = std::max(largest, res.fits[i].memory.total());
    const double unit = largest >= 1e9 ? 1e9 : 1e6;  // MB when every shown row is under 1 GB
    absl::StrAppend(&out, "rank   dp  pp  tp  v schedule    mb x m   recompute zero   step ms    tokens/s   MFU  bubble ",
                    unit == 1e9 ? "peak GB" : "peak MB", " = weights+grads+optim+activ+comm\n");
    for (int i = 0; i < std::min<int>(top, res.fits.size()); ++i) absl::StrAppend(&out, Row(i + 1, res.fits[i], unit));
  }
  // Rejections: a mesh-level reason once; "does not fit" once per mesh with its smallest layout.
  std::map<std::string, std::string> mesh_reason;
  std::map<std::string, int> too_big;
  std::vector<std::string> order;
  for (const PlanRejection& rj : res.rejected) {
    const std::string mesh = MeshName(rj.layout);
    if (rj.split || mesh_reason.count(mesh)) continue;  // split skips: the note above
    if (rj.why.rfind("does not fit", 0) == 0) {
      ++too_big[mesh];
      continue;
    }
    if (rj.layout.micro_batch == 1 && rj.layout.microbatches == 1 && rj.layout.recompute.policy == RecomputePolicy::kNone &&
        rj.layout.zero == 0 && rj.layout.schedule == ScheduleKind::k1F1B) {
      mesh_reason[mesh] = rj.why;
      order.push_back(mesh);
    }
  }
  std::map<std::string, const PlanRejection*> smallest;  // per mesh, over the layouts that did not fit
  for (const PlanRejection& rj : res.rejected) {
    if (rj.why.rfind("does not fit", 0) != 0) continue;
    const std::string mesh = MeshName(rj.layout);
    if (!smallest.count(mesh) || rj.bytes < smallest[mesh]->bytes) smallest[mesh] = &rj;
  }
  std::map<std::string, bool> mesh_fits;
  for (const PlanCandidate& c : res.fits) mesh_fits[MeshName(c.layout)] = true;
  if (!order.empty() || !smallest.empty()) absl::StrAppend(&out, "\nrejected:\n");
  for (const std::string& mesh : order) absl::StrAppend(&out, "  ", mesh, ": ", mesh_reason[mesh], "\n");
  for (const auto& [mesh, c] : smallest) {
    if (mesh_fits.count(mesh)) continue;  // some layouts of this mesh fit: listed above
    absl::StrAppend(&out, "  ", mesh, ": does not fit: ", FormatBytes(c->bytes), " > ", FormatBytes(res.capacity),
                    " even at its smallest (", ToString(c->layout), ")\n");
  }
  int partial = 0;
  for (const auto& [mesh, n] : too_big) partial += mesh_fits.count(mesh) ? n : 0;
  if (partial > 0) {
    absl::StrAppend(&out, "  ", partial, " more layouts of the meshes above do not fit in ", FormatBytes(res.capacity),
                    " (--json lists each)\n");
  }
  int unrunnable = 0;
  std::string example;
  for (const PlanRejection& rj : res.rejected) {
    if (rj.split || rj.why.rfind("does not fit", 0) == 0 || mesh_reason.count(MeshName(rj.layout))) continue;
    ++unrunnable;
    if (example.empty()) example = absl::StrCat(ToString(rj.layout), ": ", rj.why);
  }
  if (unrunnable > 0) {
    absl::StrAppend(&out, "  ", unrunnable, " layouts break a schedule rule, e.g. ", example, "\n");
  }
  return out;
}

std::string PlanJson(const PlanHeader& h, const PlanRequest& r, const PlanResult& res, int top) {
  auto layout_json = [](const PlanLayout& l) {
    return nlohmann::json{{"dp", l.dp}, {"pp", l.pp}, {"tp", l.tp}, {"virtual_stages", l.virtual_stages},
                          {"schedule", ScheduleKindName(l.schedule)}, {"micro_batch", l.micro_batch},
                          {"microbatches", l.microbatches}, {"recompute", RecomputeName(l.recompute)},
                          {"zero", l.zero}, {"sequence_parallel", l.sequence_parallel},
                          {"layers_per_part", l.layers_per_part}};
  };
  nlohmann::json fits = nlohmann::json::array(), rejected = nlohmann::json::array();
  for (int i = 0; i < std::min<int>(top, res.fits.size()); ++i) {
    const PlanCandidate& c = res.fits[i];
    nlohmann::json j = layout_json(c.layout);
    j["step_s"] = c.time.step;
    j["tokens_per_s"] = c.time.tokens_per_s;
    j["mfu"] = c.time.mfu;
    j["mfu_datasheet"] = c.time.mfu_datasheet;
    j["bubble"] = c.time.bubble;
    j["memory"] = {{"total", c.memory.total()},     {"weights", c.memory.weights},
                   {"grads", c.memory.grads},       {"optimizer", c.memory.optimizer},
                   {"activations", c.memory.activations}, {"comm", c.memory.comm},
                   {"stage", c.memory.stage},       {"in_flight", c.memory.in_flight}};
    fits.push_back(j);
  }
  for (const PlanRejection& rj : res.rejected) {
    nlohmann::json j = layout_json(rj.layout);
    j["why"] = rj.why;
    if (rj.split) j["split_skipped"] = true;
    rejected.push_back(j);
  }
  nlohmann::json out = {{"config", h.config},     {"model", h.model},       {"gpus", h.gpus},
                        {"gpus_per_node", h.gpus_per_node}, {"seq", h.seq}, {"global_batch", h.global_batch},
                        {"profile", r.hw.name},   {"capacity_bytes", res.capacity},
                        {"fits", fits},           {"rejected", rejected}};
  if (!r.layers_per_part.empty()) out["layers_per_stage"] = r.layers_per_part;
  return out.dump(2) + "\n";
}

std::string ExplainText(const PlanCandidate& c, int width) {
  const SimResult& sim = c.time.sim;
  const double span = std::max(sim.makespan, 1e-12);
  std::string out = absl::StrFormat("layout: %s\npipeline %.4f s (one column = %.3f ms), bubble %.1f%%\n",
                                    ToString(c.layout), span, 1e3 * span / width, 100 * c.time.bubble);
  for (size_t s = 0; s < sim.timeline.size(); ++s) {
    std::string row(width, '.');
    for (const TimedAction& t : sim.timeline[s]) {
      const int a = static_cast<int>(t.start / span * width), b = std::max(a + 1, static_cast<int>(t.end / span * width));
      char ch = OpName(t.action.op)[0];
      if (t.action.chunk > 0) ch = static_cast<char>(std::tolower(ch));
      for (int i = a; i < std::min(b, width); ++i) row[i] = ch;
    }
    absl::StrAppend(&out, absl::StrFormat("stage %2d |%s| busy %.1f%%, peak in flight %d\n", s, row,
                                          100 * (1 - sim.stage_bubble[s]), sim.peak_in_flight[s]));
  }
  const StepPrediction& t = c.time;
  absl::StrAppend(&out, absl::StrFormat(
      "F/B/I/W per (micro-batch, chunk): %.3f / %.3f / %.3f / %.3f ms, tp collectives %.3f ms, p2p message %.3f ms\n"
      "step %.4f s = pipeline %.4f + dp/zero/tied sync %.4f + optimizer %.4f + overhead %.4f\n"
      "memory (stage %d, %d in flight): weights %s, grads %s, optimizer %s, activations %s, comm %s = %s\n",
      1e3 * t.forward, 1e3 * t.backward, 1e3 * t.backward_input, 1e3 * t.backward_weight, 1e3 * t.tp_comm,
      1e3 * t.p2p, t.step, t.pipeline, t.dp_sync, t.optimizer, t.overhead, c.memory.stage, c.memory.in_flight,
      FormatBytes(c.memory.weights), FormatBytes(c.memory.grads), FormatBytes(c.memory.optimizer),
      FormatBytes(c.memory.activations), FormatBytes(c.memory.comm), FormatBytes(c.memory.total())));
  return out;
}

std::vector<TraceEvent> ExplainTraceEvents(const PlanCandidate& c) {
  std::vector<TraceEvent> events;
  const SimResult& sim = c.time.sim;
  for (size_t s = 0; s < sim.timeline.size(); ++s) {
    for (const TimedAction& t : sim.timeline[s]) {
      events.push_back({absl::StrCat(OpName(t.action.op), t.action.microbatch, ".", t.action.chunk), "compute",
                        static_cast<int64_t>(t.start * 1e9), static_cast<int64_t>(t.end * 1e9), static_cast<int>(s)});
    }
  }
  return events;
}

}  // namespace baton
