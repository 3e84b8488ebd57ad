// `baton plan`'s search and command line: the rejection reasons a person
// reads ("tp=16 crosses nodes", "heads 12 not divisible by tp 8", "does not
// fit: ..."), the ranking order, the seed layout it beats, and the binary's
// --json, --explain (ASCII + Chrome trace) and bad-input behaviour; a job's
// explicit split (parallel.layers_per_stage) where it applies and where not.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "launcher/plan_report.h"
#include "launcher/plan_search.h"
#include "nlohmann/json.hpp"

namespace baton {
namespace {

ModelConfig Llama7B() {
  ModelConfig c;
  c.layers = 32, c.dim = 4096, c.heads = 32, c.kv_heads = 32, c.ffn_dim = 11008, c.vocab_size = 32000;
  c.tie_embeddings = false;
  return c;
}

PlanRequest Request(const ModelConfig& m, int gpus, int per_node, int global_batch) {
  PlanRequest r;
  r.model = m;
  r.seq = 4096;
  r.global_batch = global_batch;
  r.gpus = gpus;
  r.gpus_per_node = per_node;
  r.hw = *BuiltinProfile("h100-80g");
  return r;
}

bool HasReason(const PlanResult& res, const std::string& needle) {
  for (const PlanRejection& r : res.rejected) {
    if (r.why.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(PlanSearch, RejectionsNameTheRule) {
  absl::StatusOr<PlanResult> res = SearchLayouts(Request(Llama7B(), 32, 8, 64));
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(HasReason(*res, "tp=16 crosses nodes (gpus-per-node 8)"));
  EXPECT_TRUE(HasReason(*res, "tp=32 crosses nodes"));
  ModelConfig odd = Llama7B();
  odd.heads = odd.kv_heads = 12;
  odd.dim = 768;
  res = SearchLayouts(Request(odd, 8, 8, 64));
  ASSERT_TRUE(res.ok());
  EXPECT_TRUE(HasReason(*res, "heads 12 not divisible by tp 8"));
  ModelConfig big = Llama7B();
  big.layers = 80, big.dim = 8192, big.heads = 64, big.kv_heads = 8, big.ffn_dim = 28672;
  res = SearchLayouts(Request(big, 8, 8, 64));
  ASSERT_TRUE(res.ok());
  EXPECT_TRUE(res->fits.empty());  // 70B on 8 x 80 GB with f32 master weights, grads and Adam: no
  EXPECT_TRUE(HasReason(*res, "does not fit: "));
}

TEST(PlanSearch, FitsAreRankedAndFitInMemory) {
  absl::StatusOr<PlanResult> res = SearchLayouts(Request(Llama7B(), 8, 8, 64));
  ASSERT_TRUE(res.ok());
  ASSERT_FALSE(res->fits.empty());
  for (size_t i = 0; i < res->fits.size(); ++i) {
    EXPECT_LE(res->fits[i].memory.total(), res->capacity);
    if (i > 0) EXPECT_LE(res->fits[i - 1].time.step, res->fits[i].time.step);
  }
}

// The seed's layout (7B on 4 H100s, tp=4, 1F1B, full recompute) is a
// valid plan, and the planner's first choice is predicted faster.
TEST(PlanSearch, BeatsTheSeedLayout) {
  const PlanRequest r = Request(Llama7B(), 4, 8, 128);
  PlanLayout seed;
  seed.tp = 4;
  seed.sequence_parallel = true;
  seed.micro_batch = 1;
  seed.microbatches = 128;
  seed.recompute.policy = RecomputePolicy::kFull;
  std::string why;
  absl::StatusOr<PlanCandidate> c = EvaluateLayout(r, seed, &why);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(why, "");
  absl::StatusOr<PlanResult> res = SearchLayouts(r);
  ASSERT_TRUE(res.ok());
  ASSERT_FALSE(res->fits.empty());
  EXPECT_LT(res->fits[0].time.step, c->time.step);
}

// An explicit split (parallel.layers_per_stage) is priced on every searched
// layout of its pp·virtual_stages, interleaved ones included, as the engine
// accepts it there; the other layouts are skipped with the engine's reason
// and the table says so; a split no layout can use refuses the search.
TEST(PlanSearch, ExplicitSplitAppliesToItsPartsAndSkipsTheRest) {
  PlanRequest r = Request(Llama7B(), 8, 8, 64);
  r.layers_per_part = {9, 9, 9, 5};  // a lighter last stage: the head weighs several layers
  absl::StatusOr<PlanResult> res = SearchLayouts(r);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_FALSE(res->fits.empty());
  bool interleaved = false;
  for (const PlanCandidate& c : res->fits) {
    EXPECT_EQ(c.layout.parts(), 4) << ToString(c.layout);
    EXPECT_EQ(c.layout.layers_per_part, r.layers_per_part) << ToString(c.layout);
    interleaved |= c.layout.pp == 2 && c.layout.virtual_stages == 2;
  }
  EXPECT_TRUE(interleaved);
  int skipped = 0;
  for (const PlanRejection& rj : res->rejected) {
    if (!rj.split) continue;
    ++skipped;
    EXPECT_NE(rj.layout.parts(), 4) << ToString(rj.layout);
  }
  EXPECT_GT(skipped, 0);
  EXPECT_TRUE(HasReason(*res, "parallel.layers_per_stage has 4 entries, but pp=8 × virtual_stages=1 = 8 model parts"));
  EXPECT_TRUE(HasReason(*res, "parallel.layers_per_stage has 4 entries, but pp=1 × virtual_stages=1 = 1 model parts"));
  const std::string table = FormatPlanTable(PlanHeader{"job.toml", ModelSummary(r.model), 8, 8, r.seq, 64}, r, *res, 5);
  EXPECT_NE(table.find("split: parallel.layers_per_stage=[9, 9, 9, 5] prices every layout of pp·virtual_stages=4 "
                       "model parts; " + std::to_string(skipped) + " searched layouts"),
            std::string::npos)
      << table;
  EXPECT_EQ(table.find("layers_per_stage has"), std::string::npos) << table;  // one note, not a rule per layout

  // The same layout priced with and without the split: the plan follows it.
  PlanLayout l = res->fits[0].layout;
  std::string why;
  absl::StatusOr<PlanCandidate> with = EvaluateLayout(r, l, &why);
  l.layers_per_part.clear();
  absl::StatusOr<PlanCandidate> without = EvaluateLayout(r, l, &why);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_NE(with->memory.total(), without->memory.total());
  EXPECT_NE(with->time.step, without->time.step);

  r.layers_per_part = {9, 9, 9, 4};
  res = SearchLayouts(r);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().message(), "parallel.layers_per_stage sums to 31 layers, but model.layers=32");
}

struct CliRun {
  int status;
  std::string out;
};

CliRun Baton(const std::string& args) {
  const std::string cmd = std::string(BATON_BINARY) + " " + args + " 2>&1";
  CliRun r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p) != nullptr) r.out += buf;
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(PlanCli, JsonExplainAndBadInput) {
  const std::string cfg = std::string(BATON_SOURCE_DIR) + "/examples/tiny.toml";
  CliRun j = Baton("plan --config " + cfg + " --gpus 4 --gpus-per-node 4 --gpu cpu-dev --json --top 3");
  ASSERT_EQ(j.status, 0) << j.out;
  nlohmann::json doc = nlohmann::json::parse(j.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << j.out;
  EXPECT_EQ(doc["fits"].size(), 3u);
  EXPECT_GT(doc["fits"][0]["tokens_per_s"].get<double>(), 0);
  EXPECT_FALSE(doc["rejected"].empty());  // tp = 4 does not divide kv_heads 2

  const std::string trace = testing::TempDir() + "/plan_trace.json";
  CliRun e = Baton("plan --config " + cfg + " --gpus 4 --gpus-per-node 4 --gpu cpu-dev --set parallel.pp=2 --explain 1 "
                "--trace " + trace);
  ASSERT_EQ(e.status, 0) << e.out;
  EXPECT_NE(e.out.find("stage  0 |"), std::string::npos) << e.out;
  std::ifstream in(trace);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json events = nlohmann::json::parse(text.str(), nullptr, false);
  ASSERT_FALSE(events.is_discarded());

  CliRun t = Baton("plan --config " + cfg + " --gpus 4");
  EXPECT_EQ(t.status, 0) << t.out;
  EXPECT_NE(t.out.find("rank   dp  pp  tp"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("kv_heads 2 not divisible by tp 4"), std::string::npos) << t.out;

  // --calibrate writes a profile that --gpu reads back.
  const std::string profile = testing::TempDir() + "/plan_profile.json";
  CliRun c = Baton("plan --calibrate --cores 2 --out " + profile);
  ASSERT_EQ(c.status, 0) << c.out;
  absl::StatusOr<HardwareProfile> p = LoadProfile(profile);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_GT(p->gemm_large_tflops, 0);
  EXPECT_GT(p->attention_bwd_tflops, 0);
  EXPECT_EQ(p->concurrent_ranks, 2);
  EXPECT_EQ(Baton("plan --config " + cfg + " --gpus 2 --gpu " + profile).status, 0);

  // parallel.layers_per_stage: priced where it applies, and the config's
  // layout with it; a split the engine refuses for the config's own layout
  // is refused with the engine's one line.
  CliRun s = Baton("plan --config " + cfg + " --gpus 2 --gpu cpu-dev --set parallel.pp=2 "
                   "'parallel.layers_per_stage=[1, 3]'");
  EXPECT_EQ(s.status, 0) << s.out;
  EXPECT_NE(s.out.find("split: parallel.layers_per_stage=[1, 3] prices every layout of pp·virtual_stages=2"),
            std::string::npos) << s.out;
  EXPECT_NE(s.out.find("cannot use it and are skipped"), std::string::npos) << s.out;  // pp=1
  EXPECT_NE(s.out.find("the config's layout (dp=1 pp=2 tp=1 1f1b mb=4x4 recompute=none zero=0 split=1+3)"),
            std::string::npos) << s.out;
  CliRun refused = Baton("plan --config " + cfg + " --gpus 4 --gpu cpu-dev --set parallel.pp=4 "
                         "'parallel.layers_per_stage=[1, 3]'");
  EXPECT_EQ(refused.status, 2) << refused.out;
  EXPECT_EQ(refused.out, "baton: error: parallel.layers_per_stage has 2 entries, but parallel.pp=4 × "
                         "parallel.virtual_stages=1 = 4 model parts\n");

  EXPECT_EQ(Baton("plan --config " + cfg).status, 2);
  EXPECT_EQ(Baton("plan --config " + cfg + " --gpus 4 --frobnicate").status, 2);
  EXPECT_EQ(Baton("plan --config " + cfg + " --gpus 4 --gpu a100").status, 2);
}

}  // namespace
}  // namespace baton
