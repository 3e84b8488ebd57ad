// The figures of an inference run, for people (the summary lines at the
// end) and for monitoring (a Prometheus text-format file, scraped by a node
// exporter's textfile collector or read by scripts): request counts,
// prefill and decode throughput, latency and time-to-first-token
// percentiles and histograms, batch occupancy, KV-cache use, peak memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace baton {

struct InferSummary {
  int64_t requests = 0;           // answered in this run (results)
  int64_t errors = 0;             // error records written in this run
  int64_t skipped = 0;            // already in the output (a restart)
  int64_t prompt_tokens = 0;      // of answered requests
  int64_t completion_tokens = 0;  // of answered requests
  int64_t prefill_tokens = 0;     // run through prefills, recomputes included
  int64_t generated_tokens = 0;   // sampled, in any step
  int64_t decode_tokens = 0;      // sampled in decode-only steps (the decode rate's numerator)
  double prefill_s = 0, decode_s = 0, wall_s = 0;
  int64_t steps = 0, preemptions = 0, refills = 0;
  double batch_occupancy = 0;     // mean sequences per step / max_batch, in [0, 1]
  double kv_peak_use = 0;         // most blocks in use / blocks, in [0, 1]
  int64_t kv_capacity_tokens = 0;
  int64_t peak_memory_bytes = 0;  // resident set, the largest of the ranks
  int64_t peak_gpu_bytes = 0;     // GPU memory in use at its peak (weights, KV cache, activations); 0 on the CPU
  int ranks = 1;
  std::vector<double> latency_s, ttft_s;  // per answered request
};

// The q-quantile (0 <= q <= 1) of `v`, linear between order statistics; 0 if empty.
double Percentile(std::vector<double> v, double q);

// The summary for people: a few lines, no trailing newline.
std::string FormatInferSummary(const InferSummary& s);

// Prometheus text exposition format (version 0.0.4).
std::string FormatInferPrometheus(const InferSummary& s);
// Writes it to `path` through a temporary name (a scraper never reads half a file).
absl::Status WriteInferPrometheus(const std::string& path, const InferSummary& s);

}  // namespace baton
