// `baton plan` flag parsing and output (see plan_command.h).
#include "launcher/plan_command.h"

#include <cstdio>
#include <fstream>
#include <thread>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "launcher/config.h"
#include "launcher/mpi_session.h"
#include "launcher/plan_report.h"
#include "launcher/plan_search.h"
#include "nlohmann/json.hpp"

namespace baton {
namespace {

constexpr char kPlanUsage[] =
    "usage: baton plan --config FILE --gpus N [--gpus-per-node G] [--nodes K]\n"
    "           [--gpu h100-80g|h200-141g|cpu-dev|PROFILE.json] [--top K] [--json]\n"
    "           [--explain N [--trace FILE]] [--set section.key=value ...]\n"
    "       baton plan --calibrate --out PROFILE.json [--cores N]\n"
    "       baton plan --show-profile [--gpu NAME]\n";

struct PlanFlags {
  std::string config, gpu, out, trace = "plan_trace.json";
  std::vector<std::string> overrides;
  int gpus = 0, gpus_per_node = 8, nodes = 0, top = 10, explain = 0, cores = 0;
  bool json = false, calibrate = false, show_profile = false;
};

int Bad(const std::string& why) {
  std::fprintf(stderr, "baton: error: %s\n%s", why.c_str(), kPlanUsage);
  return 2;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "baton: error: %s\n", std::string(s.message()).c_str());
  return ExitCodeFor(s);
}

// Parses args into flags; "" on success, else the one-line complaint.
std::string ParseFlags(const std::vector<std::string>& args, PlanFlags* f) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) -> bool {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    auto number = [&](int* out) -> bool {
      std::string v;
      return value(&v) && absl::SimpleAtoi(v, out);
    };
    bool ok = true;
    if (a == "--config") {
      ok = value(&f->config);
    } else if (a == "--gpu") {
      ok = value(&f->gpu);
    } else if (a == "--out") {
      ok = value(&f->out);
    } else if (a == "--trace") {
      ok = value(&f->trace);
    } else if (a == "--set") {  // one or more section.key=value, as for train
      ok = i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0;
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) f->overrides.push_back(args[++i]);
    } else if (a == "--gpus") {
      ok = number(&f->gpus);
    } else if (a == "--gpus-per-node") {
      ok = number(&f->gpus_per_node);
    } else if (a == "--nodes") {
      ok = number(&f->nodes);
    } else if (a == "--top") {
      ok = number(&f->top);
    } else if (a == "--explain") {
      ok = number(&f->explain);
    } else if (a == "--cores") {
      ok = number(&f->cores);
    } else if (a == "--json") {
      f->json = true;
    } else if (a == "--show-profile") {
      f->show_profile = true;
    } else if (a == "--calibrate") {
      f->calibrate = true;
    } else {
      return absl::StrCat("unknown flag '", a, "' for 'plan'");
    }
    if (!ok) return absl::StrCat(a, " needs a ", a == "--config" || a == "--gpu" || a == "--out" ? "value" : "number");
  }
  return "";
}

int RunCalibrate(const PlanFlags& f) {
  if (f.out.empty()) return Bad("plan --calibrate: --out PROFILE.json is required");
  const int cores = f.cores > 0 ? f.cores : std::max(1u, std::thread::hardware_concurrency());
  absl::StatusOr<HardwareProfile> p = CalibrateCpu(cores);
  if (!p.ok()) return Fail(p.status());
  std::ofstream out(f.out);
  out << ProfileToJson(*p);
  if (!out) return Fail(absl::PermissionDeniedError(absl::StrCat("--out ", f.out, ": cannot write")));
  std::printf("calibrated %s: GEMM %.3f/%.3f/%.3f TFLOP/s (large/medium/small), attention %.4f/%.4f TFLOP/s, "
              "memory %.1f GB/s -> %s\n",
              p->name.c_str(), p->gemm_large_tflops, p->gemm_medium_tflops, p->gemm_small_tflops,
              p->attention_fwd_tflops, p->attention_bwd_tflops, p->memory_gbs, f.out.c_str());
  return 0;
}

// parallel.schedule as parallel/'s ScheduleKind, whether the config holds
// that enum already or launcher/'s own PipelineScheduleKind (by name).
template <typename Kind>
ScheduleKind AsScheduleKind(Kind kind) {
  if constexpr (std::is_same_v<Kind, ScheduleKind>) {
    return kind;
  } else {
    return ParseScheduleKind(PipelineScheduleKindName(kind)).value_or(ScheduleKind::k1F1B);
  }
}

// The engine refuses a job whose explicit split does not fit the job's own
// layout (ValidateMesh), so the plan does, with the engine's line. Other
// mesh problems are not refused here: the config-layout line reports them.
absl::Status SplitRefusal(const JobConfig& c) {
  const ParallelConfig& p = c.parallel;
  if (p.layers_per_stage.empty()) return absl::OkStatus();
  const int world = p.dp * p.pp * p.tp;
  absl::Status st = ValidateMesh(c, world);
  if (st.ok()) return st;
  JobConfig balanced = c;
  balanced.parallel.layers_per_stage.clear();
  return ValidateMesh(balanced, world).ok() ? st : absl::OkStatus();
}

// One line on the config's layout, when it uses exactly --gpus devices.
std::string ConfigLayoutLine(const JobConfig& c, const PlanRequest& r, const PlanResult& res) {
  const PlanLayout l = PlanLayoutOf(c);
  if (l.gpus() != r.gpus) return "";
  std::string why;
  absl::StatusOr<PlanCandidate> cand = EvaluateLayout(r, l, &why);
  std::string line = absl::StrCat("\nthe config's layout (", ToString(l), "): ");
  if (!cand.ok()) return absl::StrCat(line, "cannot run: ", why, "\n");
  if (!why.empty()) return absl::StrCat(line, why, "\n");
  absl::StrAppend(&line, absl::StrFormat("step %.2f ms, %.0f tokens/s, MFU %.1f%%, bubble %.1f%%, peak %s",
                                         1e3 * cand->time.step, cand->time.tokens_per_s, 100 * cand->time.mfu,
                                         100 * cand->time.bubble, FormatBytes(cand->memory.total())));
  if (!res.fits.empty() && res.fits[0].time.step < 0.995 * cand->time.step) {
    absl::StrAppend(&line, absl::StrFormat("; rank 1 is %.2fx faster", cand->time.step / res.fits[0].time.step));
  }
  return line + "\n";
}

// The config's layout for --json: its prediction, or why it cannot run.
nlohmann::json ConfigLayoutJson(const JobConfig& c, const PlanRequest& r) {
  const PlanLayout l = PlanLayoutOf(c);
  nlohmann::json j = {{"layout", ToString(l)}, {"gpus", l.gpus()}};
  std::string why;
  absl::StatusOr<PlanCandidate> cand = EvaluateLayout(r, l, &why);
  if (!why.empty()) j["why"] = why;
  if (cand.ok()) {
    j["step_s"] = cand->time.step;
    j["tokens_per_s"] = cand->time.tokens_per_s;
    j["mfu"] = cand->time.mfu;
    j["bubble"] = cand->time.bubble;
    j["pipeline_s"] = cand->time.pipeline;
    j["peak_bytes"] = cand->memory.total();
    j["comm_bytes"] = cand->memory.comm;
  }
  return j;
}

}  // namespace

PlanLayout PlanLayoutOf(const JobConfig& c) {
  const ParallelConfig& p = c.parallel;
  PlanLayout l;
  l.dp = p.dp, l.pp = p.pp, l.tp = p.tp, l.virtual_stages = p.virtual_stages;
  l.schedule = AsScheduleKind(p.schedule);
  l.micro_batch = c.train.micro_batch_size;
  l.microbatches = c.microbatches();
  l.recompute = c.recompute;
  l.zero = p.zero;
  l.sequence_parallel = p.sequence_parallel;
  l.layers_per_part = p.layers_per_stage;
  return l;
}

int RunPlanCommand(const std::vector<std::string>& args) {
  PlanFlags f;
  if (const std::string why = ParseFlags(args, &f); !why.empty()) return Bad(why);
  if (f.calibrate) return RunCalibrate(f);
  if (f.show_profile) {  // a built-in profile as JSON: a start for a PROFILE.json of one's own
    absl::StatusOr<HardwareProfile> hw = LoadProfile(f.gpu.empty() ? "h100-80g" : f.gpu);
    if (!hw.ok()) return Fail(hw.status());
    std::printf("%s", ProfileToJson(*hw).c_str());
    return 0;
  }
  if (f.config.empty()) return Bad("plan: --config FILE is required");
  if (f.nodes > 0 && f.gpus == 0) f.gpus = f.nodes * f.gpus_per_node;
  if (f.gpus < 1) return Bad("plan: --gpus N (or --nodes K) is required, N >= 1");
  if (f.gpus_per_node < 1) return Bad("plan: --gpus-per-node must be >= 1");
  if (f.top < 1) return Bad("plan: --top must be >= 1");
  absl::StatusOr<JobConfig> config = LoadJobConfig(f.config, f.overrides);
  if (!config.ok()) return Fail(config.status());
  if (absl::Status split = SplitRefusal(*config); !split.ok()) return Fail(split);
  if (f.gpu.empty()) f.gpu = config->train.device == "cpu" ? "cpu-dev" : "h100-80g";
  absl::StatusOr<HardwareProfile> hw = LoadProfile(f.gpu);
  if (!hw.ok()) return Fail(hw.status());

  PlanRequest r;
  r.model = config->model;
  r.seq = config->train.seq_len;
  r.global_batch = config->train.global_batch_size;
  r.gpus = f.gpus;
  r.gpus_per_node = std::min(f.gpus_per_node, f.gpus);
  r.hw = *hw;
  r.layers_per_part = config->parallel.layers_per_stage;
  absl::StatusOr<PlanResult> res = SearchLayouts(r);
  if (!res.ok()) return Fail(res.status());
  PlanHeader h{f.config, ModelSummary(r.model), f.gpus, r.gpus_per_node, r.seq, r.global_batch};

  if (f.explain > 0) {
    if (f.explain > static_cast<int>(res->fits.size())) {
      return Bad(absl::StrCat("--explain ", f.explain, ": only ", res->fits.size(), " layouts fit"));
    }
    const PlanCandidate& c = res->fits[f.explain - 1];
    std::printf("%s", ExplainText(c).c_str());
    std::vector<TraceRow> rows;
    for (int s = 0; s < c.layout.pp; ++s) rows.push_back({s, absl::StrCat("stage ", s)});
    absl::Status s = WriteChromeTrace(f.trace, ExplainTraceEvents(c), rows);
    if (!s.ok()) return Fail(s);
    std::printf("chrome trace: %s\n", f.trace.c_str());
    return 0;
  }
  if (f.json) {
    nlohmann::json doc = nlohmann::json::parse(PlanJson(h, r, *res, f.top));
    doc["config_layout"] = ConfigLayoutJson(*config, r);
    std::printf("%s\n", doc.dump(2).c_str());
    return 0;
  }
  std::printf("%s%s", FormatPlanTable(h, r, *res, f.top).c_str(), ConfigLayoutLine(*config, r, *res).c_str());
  return 0;
}

}  // namespace baton
