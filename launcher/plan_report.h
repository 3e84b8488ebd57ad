// How `baton plan` shows its answer: the ranked table of layouts that fit,
// one line per rejected mesh or layout group, the same as JSON for
// scripts, and for --explain one layout's simulated step as an ASCII
// timeline per stage and as a Chrome trace (chrome://tracing, Perfetto).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "launcher/plan_search.h"
#include "parallel/trace.h"

namespace baton {

struct PlanHeader {
  std::string config;   // the config file
  std::string model;    // "7.0B params, 32 layers, dim 4096, ..."
  int gpus = 0, gpus_per_node = 0;
  int64_t seq = 0;
  int global_batch = 0;
};

// The top `top` fits, then the rejections (a mesh that cannot run once; a
// mesh whose every layout is too big once, with its smallest peak).
std::string FormatPlanTable(const PlanHeader& header, const PlanRequest& request, const PlanResult& result, int top);
// Every fit (up to `top`) and every rejection, one object.
std::string PlanJson(const PlanHeader& header, const PlanRequest& request, const PlanResult& result, int top);

// One line per stage, `width` columns over the step: F/B/I/W per action
// (upper case chunk 0, lower case later chunks), '.' idle; then the
// memory and time split.
std::string ExplainText(const PlanCandidate& c, int width = 100);
// The simulated step as Chrome trace events, one row per stage.
std::vector<TraceEvent> ExplainTraceEvents(const PlanCandidate& c);

std::string ModelSummary(const ModelConfig& m);

}  // namespace baton
