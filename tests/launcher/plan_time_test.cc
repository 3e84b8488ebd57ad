// Pins the planner's time model (launcher/plan_time.h) to measured step
// times (train_bench on one H200 and one H100, docs/performance.md) and to
// the textbook pipeline bubble, and checks the profile's JSON round trip.
#include <cmath>
#include <cstdio>

#include "gtest/gtest.h"
#include "launcher/plan_profile.h"
#include "launcher/plan_time.h"

namespace baton {
namespace {

ModelConfig Llama(int layers, int dim, int heads, int ffn) {
  ModelConfig c;
  c.layers = layers, c.dim = dim, c.heads = heads, c.kv_heads = heads, c.ffn_dim = ffn;
  c.vocab_size = 32000;
  c.tie_embeddings = false;
  return c;
}

double Predicted(const ModelConfig& m, int batch, int seq, const std::string& gpu, RecomputePolicy policy) {
  PlanLayout l;
  l.micro_batch = batch;
  l.recompute.policy = policy;
  absl::StatusOr<HardwareProfile> hw = BuiltinProfile(gpu);
  EXPECT_TRUE(hw.ok());
  absl::StatusOr<StepPrediction> p = PredictStep(m, l, seq, *hw, 8);
  EXPECT_TRUE(p.ok()) << p.status();
  return p->tokens_per_s;
}

struct Measured {
  const char* gpu;
  bool big;  // 1.3b (else 125m)
  RecomputePolicy policy;
  double tokens_per_s;  // train_bench, docs/performance.md
};

TEST(PlanTime, TrainBenchPresetsWithinTenPercent) {
  const ModelConfig m125 = Llama(12, 768, 12, 2048), m13 = Llama(24, 2048, 16, 5504);
  const Measured rows[] = {
      {"h200-141g", false, RecomputePolicy::kNone, 576257},  {"h200-141g", true, RecomputePolicy::kNone, 60954},
      {"h200-141g", false, RecomputePolicy::kFull, 474552},  {"h200-141g", true, RecomputePolicy::kFull, 48858},
      {"h200-141g", true, RecomputePolicy::kSelective, 56935}, {"h100-80g", false, RecomputePolicy::kNone, 474726},
      {"h100-80g", true, RecomputePolicy::kNone, 50398},     {"h100-80g", true, RecomputePolicy::kFull, 41100},
  };
  for (const Measured& r : rows) {
    const double p = r.big ? Predicted(m13, 4, 2048, r.gpu, r.policy) : Predicted(m125, 16, 1024, r.gpu, r.policy);
    const double err = p / r.tokens_per_s - 1;
    std::printf("%s %s %d: predicted %.0f measured %.0f (%+.1f %%)\n", r.gpu, r.big ? "1.3b" : "125m",
                static_cast<int>(r.policy), p, r.tokens_per_s, 100 * err);
    EXPECT_LT(std::abs(err), 0.10) << r.gpu << (r.big ? " 1.3b" : " 125m");
  }
}

TEST(PlanTime, PipelineBubbleIsTheTextbookOneForEqualStages) {
  ModelConfig m = Llama(8, 4096, 32, 11008);
  m.vocab_size = 8;  // a negligible head: equal stages
  PlanLayout l;
  l.pp = 4;
  l.microbatches = 8;
  l.micro_batch = 1;
  absl::StatusOr<HardwareProfile> hw = BuiltinProfile("h100-80g");
  absl::StatusOr<StepPrediction> p = PredictStep(m, l, 2048, *hw, 8);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->bubble, 3.0 / 11.0, 0.03);  // (p-1)/(m+p-1)
  l.schedule = ScheduleKind::kInterleaved1F1B;
  l.virtual_stages = 2;
  absl::StatusOr<StepPrediction> v = PredictStep(m, l, 2048, *hw, 8);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_LT(v->bubble, p->bubble);
}

// Many micro-batches are simulated in part and extrapolated: the bubble
// still follows (p-1)/(m+p-1) and the step grows by one F+B per micro-batch.
TEST(PlanTime, LongPipelinesExtrapolateTheSteadyState) {
  ModelConfig m = Llama(8, 4096, 32, 11008);
  m.vocab_size = 8;
  PlanLayout l;
  l.pp = 4;
  l.micro_batch = 1;
  absl::StatusOr<HardwareProfile> hw = BuiltinProfile("h100-80g");
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kZeroBubbleH1}) {
    l.schedule = kind;
    l.microbatches = 512;
    absl::StatusOr<StepPrediction> a = PredictStep(m, l, 2048, *hw, 8);
    l.microbatches = 516;
    absl::StatusOr<StepPrediction> b = PredictStep(m, l, 2048, *hw, 8);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NEAR(b->pipeline - a->pipeline, 4 * (a->forward + a->backward), 1e-6 * a->pipeline);
    if (kind == ScheduleKind::k1F1B) EXPECT_NEAR(a->bubble, 3.0 / 515.0, 0.002);
  }
}

TEST(PlanTime, TensorParallelAcrossNodesIsSlowerThanWithin) {
  const ModelConfig m = Llama(32, 4096, 32, 11008);
  PlanLayout l;
  l.tp = 8;
  l.micro_batch = 1;
  absl::StatusOr<HardwareProfile> hw = BuiltinProfile("h100-80g");
  absl::StatusOr<StepPrediction> in = PredictStep(m, l, 4096, *hw, 8);
  absl::StatusOr<StepPrediction> across = PredictStep(m, l, 4096, *hw, 4);
  ASSERT_TRUE(in.ok() && across.ok());
  EXPECT_GT(in->tp_comm, 0);
  EXPECT_GT(across->step, 1.5 * in->step);
}

TEST(PlanProfile, JsonRoundTripAndErrors) {
  absl::StatusOr<HardwareProfile> hw = BuiltinProfile("h200-141g");
  ASSERT_TRUE(hw.ok());
  absl::StatusOr<HardwareProfile> back = ProfileFromJson(ProfileToJson(*hw), "x.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gemm_large_tflops, hw->gemm_large_tflops);
  EXPECT_EQ(back->memory_bytes, hw->memory_bytes);
  EXPECT_EQ(back->inter_node.bus_gbs, hw->inter_node.bus_gbs);
  EXPECT_FALSE(ProfileFromJson("{\"name\": 1}", "bad.json").ok());
  EXPECT_FALSE(BuiltinProfile("a100").ok());
}

}  // namespace
}  // namespace baton
