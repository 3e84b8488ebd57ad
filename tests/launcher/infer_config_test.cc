// The [infer] config (file, --set, checks naming the key) and the run's
// figures (percentiles, the summary lines, the Prometheus text with its
// histogram buckets).
#include "launcher/infer_config.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launcher/infer_metrics.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

TEST(InferConfig, FileThenOverrides) {
  const std::string path = ::testing::TempDir() + "/infer_config_test.toml";
  std::ofstream(path) << "[infer]\nmax_batch = 8\ntemperature = 0\nmetrics_prom = \"m.prom\"\n[parallel]\ndp = 4\ntp = 1\n";
  absl::StatusOr<InferConfig> c = LoadInferConfig(path, {"infer.max_batch=16", "infer.progress=lines", "infer.top_p=0.5"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_batch, 16);
  EXPECT_EQ(c->temperature, 0.0);
  EXPECT_EQ(c->top_p, 0.5);
  EXPECT_EQ(c->metrics_prom, "m.prom");
  EXPECT_EQ(c->progress, "lines");
  ASSERT_TRUE(LoadInferConfig("", {}).ok());  // defaults alone are valid
}

TEST(InferConfig, ErrorsNameTheKey) {
  auto message = [](std::vector<std::string> o) { return std::string(LoadInferConfig("", o).status().message()); };
  EXPECT_THAT(message({"infer.max_bacth=3"}), HasSubstr("unknown key 'infer.max_bacth'"));
  EXPECT_THAT(message({"infer.max_batch=0"}), HasSubstr("infer.max_batch=0 must be >= 1"));
  EXPECT_THAT(message({"infer.top_p=2"}), HasSubstr("infer.top_p=2 must be in (0, 1]"));
  EXPECT_THAT(message({"infer.block_size=x"}), HasSubstr("infer.block_size=x: expected an integer"));
  EXPECT_THAT(message({"infer.dtype=f16"}), HasSubstr("infer.dtype=\"f16\" must be"));
  EXPECT_THAT(message({"infer.device=cpu", "infer.dtype=bf16"}), HasSubstr("needs infer.device=cuda"));
  EXPECT_THAT(message({"infer.device=cuda", "infer.dtype=f64"}), HasSubstr("runs on the CPU only"));
  EXPECT_TRUE(LoadInferConfig("", {"parallel.tp=2", "parallel.pp=2"}).ok());
  EXPECT_THAT(message({"parallel.tp=0"}), HasSubstr("parallel.tp and parallel.pp must be >= 1"));
}

TEST(InferMetrics, PercentilesAndPrometheusText) {
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4, 5}, 0.99), 4.96);
  InferSummary s;
  s.requests = 3;
  s.errors = 1;
  s.decode_tokens = 100;
  s.decode_s = 2;
  s.latency_s = {0.02, 0.3, 7};
  s.ttft_s = {0.001, 0.002, 0.004};
  const std::string prom = FormatInferPrometheus(s);
  EXPECT_THAT(prom, HasSubstr("baton_infer_requests_total{outcome=\"ok\"} 3\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_requests_total{outcome=\"error\"} 1\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_decode_tokens_per_second 50\n"));
  EXPECT_THAT(prom, HasSubstr("# TYPE baton_infer_request_latency_seconds histogram\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_request_latency_seconds_bucket{le=\"0.025\"} 1\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_request_latency_seconds_bucket{le=\"0.5\"} 2\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_request_latency_seconds_bucket{le=\"10\"} 3\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_request_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_request_latency_seconds_count 3\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_time_to_first_token_seconds_bucket{le=\"0.005\"} 3\n"));
  EXPECT_THAT(prom, HasSubstr("baton_infer_request_latency_seconds_quantile{quantile=\"0.5\"} 0.300000\n"));
  EXPECT_THAT(FormatInferSummary(s), HasSubstr("decode 50 tok/s"));
}

}  // namespace
}  // namespace baton
