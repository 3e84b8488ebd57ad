// Inference summary and Prometheus text (see infer_metrics.h).
#include "launcher/infer_metrics.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace baton {

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double at = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(at);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

namespace {

double Rate(double n, double s) { return s > 0 ? n / s : 0; }

// Upper bounds (seconds) of the latency histograms: 5 ms to 10 min.
const std::vector<double>& Buckets() {
  static const std::vector<double> b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                        5,     10,   25,    50,   100, 250,  600};
  return b;
}

void Histogram(std::string& out, const std::string& name, const std::string& help, const std::vector<double>& v) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  double sum = 0;
  for (double x : v) sum += x;
  for (double le : Buckets()) {
    const int64_t n = std::count_if(v.begin(), v.end(), [&](double x) { return x <= le; });
    absl::StrAppend(&out, name, "_bucket{le=\"", absl::StrFormat("%g", le), "\"} ", n, "\n");
  }
  absl::StrAppend(&out, name, "_bucket{le=\"+Inf\"} ", v.size(), "\n", name, "_sum ", absl::StrFormat("%.6f", sum),
                  "\n", name, "_count ", v.size(), "\n");
  // The percentiles as their own gauge family (a histogram family may hold only buckets, sum, count).
  absl::StrAppend(&out, "# HELP ", name, "_quantile ", help, " Percentiles of this run.\n# TYPE ", name,
                  "_quantile gauge\n");
  for (double q : {0.5, 0.9, 0.99}) {
    absl::StrAppend(&out, name, "_quantile{quantile=\"", absl::StrFormat("%g", q), "\"} ",
                    absl::StrFormat("%.6f", Percentile(v, q)), "\n");
  }
}

void Gauge(std::string& out, const std::string& name, const std::string& help, double value,
           const char* type = "gauge") {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                  absl::StrFormat("%.6g", value), "\n");
}

}  // namespace

std::string FormatInferSummary(const InferSummary& s) {
  std::string out = absl::StrFormat(
      "infer: %d requests, %d errors, %d already done; %d prompt + %d completion tokens in %.1f s (%d rank%s)\n",
      s.requests, s.errors, s.skipped, s.prompt_tokens, s.completion_tokens, s.wall_s, s.ranks, s.ranks > 1 ? "s" : "");
  absl::StrAppendFormat(&out, "throughput: prefill %.0f tok/s, decode %.0f tok/s, overall %.0f generated tok/s\n",
                        Rate(s.prefill_tokens, s.prefill_s), Rate(s.decode_tokens, s.decode_s),
                        Rate(s.generated_tokens, s.wall_s));
  absl::StrAppendFormat(&out, "latency: P50 %.3f s, P90 %.3f s, P99 %.3f s; TTFT P50 %.3f s, P90 %.3f s, P99 %.3f s\n",
                        Percentile(s.latency_s, 0.5), Percentile(s.latency_s, 0.9), Percentile(s.latency_s, 0.99),
                        Percentile(s.ttft_s, 0.5), Percentile(s.ttft_s, 0.9), Percentile(s.ttft_s, 0.99));
  absl::StrAppendFormat(&out,
                        "batch occupancy %.0f %% over %d steps (%d refills, %d preemptions); KV cache %d tokens, "
                        "peak use %.0f %%; peak memory %.0f MiB",
                        100 * s.batch_occupancy, s.steps, s.refills, s.preemptions, s.kv_capacity_tokens,
                        100 * s.kv_peak_use, static_cast<double>(s.peak_memory_bytes) / (1 << 20));
  if (s.peak_gpu_bytes > 0) absl::StrAppendFormat(&out, ", GPU %.2f GiB", static_cast<double>(s.peak_gpu_bytes) / (1 << 30));
  return out;
}

std::string FormatInferPrometheus(const InferSummary& s) {
  std::string out;
  absl::StrAppend(&out, "# HELP baton_infer_requests_total Prompt lines by outcome in this run.\n",
                  "# TYPE baton_infer_requests_total counter\n", "baton_infer_requests_total{outcome=\"ok\"} ",
                  s.requests, "\n", "baton_infer_requests_total{outcome=\"error\"} ", s.errors, "\n",
                  "baton_infer_requests_total{outcome=\"skipped\"} ", s.skipped, "\n");
  Gauge(out, "baton_infer_prompt_tokens_total", "Prompt tokens of answered requests.", s.prompt_tokens, "counter");
  Gauge(out, "baton_infer_completion_tokens_total", "Completion tokens of answered requests.", s.completion_tokens,
        "counter");
  Gauge(out, "baton_infer_prefill_tokens_per_second", "Prefill throughput (recomputes included).",
        Rate(s.prefill_tokens, s.prefill_s));
  Gauge(out, "baton_infer_decode_tokens_per_second", "Generated tokens per second of decode steps.",
        Rate(s.decode_tokens, s.decode_s));
  Gauge(out, "baton_infer_generated_tokens_per_second", "Generated tokens per wall-clock second.",
        Rate(s.generated_tokens, s.wall_s));
  Histogram(out, "baton_infer_request_latency_seconds", "Request latency from read to last token.", s.latency_s);
  Histogram(out, "baton_infer_time_to_first_token_seconds", "Time from read to first token.", s.ttft_s);
  Gauge(out, "baton_infer_batch_occupancy_ratio", "Mean sequences per step over infer.max_batch.", s.batch_occupancy);
  Gauge(out, "baton_infer_preemptions_total", "Sequences evicted from the KV cache and recomputed.", s.preemptions,
        "counter");
  Gauge(out, "baton_infer_kv_cache_capacity_tokens", "Tokens the KV cache holds (per rank).", s.kv_capacity_tokens);
  Gauge(out, "baton_infer_kv_cache_peak_usage_ratio", "Most KV-cache blocks in use over all blocks.", s.kv_peak_use);
  Gauge(out, "baton_infer_peak_memory_bytes", "Peak resident memory of the largest rank.",
        static_cast<double>(s.peak_memory_bytes));
  Gauge(out, "baton_infer_peak_gpu_memory_bytes", "Peak GPU memory in use on the largest rank (0 on the CPU).",
        static_cast<double>(s.peak_gpu_bytes));
  return out;
}

absl::Status WriteInferPrometheus(const std::string& path, const InferSummary& s) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << FormatInferPrometheus(s);
    if (!out.flush()) return absl::InternalError(absl::StrCat("writing infer.metrics_prom ", tmp, " failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("renaming ", tmp, " to infer.metrics_prom ", path, " failed"));
  }
  return absl::OkStatus();
}

}  // namespace baton
