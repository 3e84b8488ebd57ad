// Layout invariance for pipeline parallelism (DESIGN.md invariant 1), under
// mpiexec: training with pp stages (and dp replicas) on any schedule gives,
// step for step, the loss of the single-process run and the same final
// weights (relative 1e-5): gpipe, 1f1b, interleaved, recompute, p2p over
// MPI and UCX, tied and untied embeddings. A pp=2 checkpoint resumes in one
// process on the same loss curve (checkpoints are logical), and meshes that
// do not fit the model are refused with one line naming the numbers.
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/launcher/mpi_train_fixture.h"
#include "launcher/train.h"
#include "nlohmann/json.hpp"
#include "parallel/mesh.h"
#include "parallel/ucx_p2p.h"
#include "runtime/indexed_dataset.h"
#include "runtime/tokenizer.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

using ::baton::testing::WorldRank;
using ::baton::testing::WorldSize;

fs::path SharedDir() { return ::baton::testing::SharedCorpusDir("pp_test", 7, 13); }

// 4 layers (interleaved v=2 over pp=2 and pp=4 both fit), 4 micro-batches
// of 2 per step at dp=1. Validation runs at the last step.
absl::StatusOr<JobConfig> Config(const std::string& run, std::vector<std::string> extra) {
  const fs::path dir = SharedDir();
  std::string toml = R"(
[model]
layers = 4
dim = 32
heads = 4
kv_heads = 2
ffn_dim = 48
vocab_size = 258
[train]
steps = 6
seq_len = 16
micro_batch_size = 2
global_batch_size = 8
lr = 1e-2
warmup_steps = 2
eval_every = 6
eval_batches = 2
[checkpoint]
resume = "none"
[output]
progress = "lines"
)";
  std::vector<std::string> sets = {"data.path=\"" + (dir / "corpus").string() + "\"",
                                   "checkpoint.dir=\"" + (dir / run / "ckpt").string() + "\"",
                                   "output.metrics=\"" + (dir / run / "metrics.jsonl").string() + "\""};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return ParseJobConfig(toml, "pp_test.toml", sets);
}

// Losses and validation losses, in file order.
std::vector<double> Read(const fs::path& metrics, const char* key) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(j[key].get<double>());
  }
  return out;
}

// "" when every got[i] is within rtol·|want[i]|, else the first mismatch.
std::string CompareCurves(const std::vector<double>& want, const std::vector<double>& got, double rtol) {
  if (want.size() != got.size()) return absl::StrCat("lengths ", want.size(), " != ", got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= rtol * std::abs(want[i]))) {
      return absl::StrCat("step ", i + 1, ": got ", got[i], ", want ", want[i]);
    }
  }
  return "";
}

// "" when both checkpoints hold the same params, each within relative
// rtol in L2 norm, else the first that differs.
std::string CompareWeights(const fs::path& a_path, const fs::path& b_path, double rtol) {
  auto a = ReadCheckpoint(a_path.string());
  auto b = ReadCheckpoint(b_path.string());
  if (!a.ok() || !b.ok()) return absl::StrCat(a.status().ToString(), " ", b.status().ToString());
  std::vector<std::string> an, bn;
  for (const auto& t : a->tensors) an.push_back(t.name);
  for (const auto& t : b->tensors) bn.push_back(t.name);
  if (an != bn) return absl::StrCat("tensors differ: ", absl::StrJoin(an, ","), " vs ", absl::StrJoin(bn, ","));
  for (size_t i = 0; i < a->tensors.size(); ++i) {
    if (a->tensors[i].name.rfind("params/", 0) != 0) continue;
    const float* x = a->tensors[i].tensor.data<float>();
    const float* y = b->tensors[i].tensor.data<float>();
    double num = 0, den = 0;
    for (int64_t k = 0; k < a->tensors[i].tensor.numel(); ++k) {
      num += (x[k] - y[k]) * double(x[k] - y[k]);
      den += double(x[k]) * x[k];
    }
    if (!(std::sqrt(num / den) <= rtol)) return absl::StrCat(a->tensors[i].name, ": relative L2 ", std::sqrt(num / den));
  }
  return "";
}

// The single-process run of a model (runs once per distinct `model_sets`, on rank 0).
std::string Reference(const std::vector<std::string>& model_sets) {
  static std::map<std::vector<std::string>, std::string> done;
  std::string run = "ref_" + std::to_string(done.size());
  auto it = done.find(model_sets);
  if (it != done.end()) return it->second;
  if (WorldRank() == 0) {
    auto c = Config(run, model_sets);
    EXPECT_TRUE(c.ok()) << c.status();
    TrainSummary s;
    absl::Status st = Train(*c, &s, nullptr);
    EXPECT_TRUE(st.ok()) << st;
  }
  done[model_sets] = run;
  return run;
}

MeshComms Comms(int dp, int pp, bool ucx) {
  auto mesh = Mesh::Create({dp, pp, 1}, WorldSize(), WorldRank());
  EXPECT_TRUE(mesh.ok()) << mesh.status();
  auto comms = ucx ? CreateMeshCommsWithUcxPipeline(*mesh) : CreateMpiMeshComms(*mesh);
  EXPECT_TRUE(comms.ok()) << comms.status();
  return std::move(*comms);
}

struct Layout {
  const char* name;
  int dp, pp;
  std::vector<std::string> sets;        // schedule, recompute, ...
  std::vector<std::string> model_sets;  // also given to the reference
  bool ucx = false;
};

class PipelineInvariance : public ::testing::TestWithParam<Layout> {};

TEST_P(PipelineInvariance, MatchesSingleProcess) {
  const Layout& layout = GetParam();
  if (layout.dp * layout.pp != WorldSize()) GTEST_SKIP() << "needs " << layout.dp * layout.pp << " ranks";
  const std::string ref_run = Reference(layout.model_sets);
  const std::string run = std::string("pp_") + layout.name;
  std::vector<std::string> sets = {"parallel.dp=" + std::to_string(layout.dp),
                                   "parallel.pp=" + std::to_string(layout.pp),
                                   "output.trace=\"" + (SharedDir() / run / "trace.json").string() + "\""};
  sets.insert(sets.end(), layout.sets.begin(), layout.sets.end());
  sets.insert(sets.end(), layout.model_sets.begin(), layout.model_sets.end());
  auto config = Config(run, sets);
  ASSERT_TRUE(config.ok()) << config.status();
  MeshComms comms = Comms(layout.dp, layout.pp, layout.ucx);
  TrainSummary s;
  absl::Status st = Train(*config, &s, &comms);
  ASSERT_TRUE(st.ok()) << st;
  if (layout.ucx) {
    auto* ucx = dynamic_cast<UcxP2pCommunicator*>(comms.pp.get());
    ASSERT_NE(ucx, nullptr);
    EXPECT_TRUE(ucx->ucx().Close().ok());
  }
  if (WorldRank() != 0) return;

  const fs::path dir = SharedDir();
  const std::vector<double> ref = Read(dir / ref_run / "metrics.jsonl", "loss");
  ASSERT_EQ(ref.size(), 6u);
  EXPECT_EQ(CompareCurves(ref, Read(dir / run / "metrics.jsonl", "loss"), 1e-5), "");
  EXPECT_EQ(CompareCurves(Read(dir / ref_run / "metrics.jsonl", "val_loss"),
                          Read(dir / run / "metrics.jsonl", "val_loss"), 1e-5), "");
  EXPECT_EQ(CompareWeights(dir / ref_run / "ckpt" / "step_00000006.h5", dir / run / "ckpt" / "step_00000006.h5", 1e-5), "");
  // The last step's timeline: one row per rank, forward events named "F<mb>.<chunk>".
  std::ifstream trace(dir / run / "trace.json");
  std::stringstream text;
  text << trace.rdbuf();
  EXPECT_THAT(text.str(), ::testing::HasSubstr("\"F0.0\""));
  EXPECT_THAT(text.str(), ::testing::HasSubstr(absl::StrCat("rank ", WorldSize() - 1)));
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PipelineInvariance,
    ::testing::Values(
        Layout{"gpipe", 1, 2, {"parallel.schedule=\"gpipe\""}, {}},
        Layout{"onefoneb", 1, 2, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"interleaved", 1, 2, {"parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2"}, {}},
        Layout{"full_recompute", 1, 2, {"recompute.policy=\"full\""}, {}},
        Layout{"untied", 1, 2, {"parallel.schedule=\"1f1b\""}, {"model.tie_embeddings=false"}},
        Layout{"ucx", 1, 2, {"parallel.schedule=\"1f1b\"", "parallel.p2p=\"ucx\""}, {}, true},
        Layout{"dp2_pp2", 2, 2, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"pp4", 1, 4, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"pp4_untied_selective", 1, 4, {"recompute.policy=\"selective\""}, {"model.tie_embeddings=false"}}),
    [](const ::testing::TestParamInfo<Layout>& info) { return std::string(info.param.name); });

// A pp=2 checkpoint is logical: one process resumes it on the same curve.
TEST(PipelineCheckpoint, ResumesInOneProcess) {
  if (WorldSize() != 2) GTEST_SKIP() << "needs 2 ranks";
  const std::string ref_run = Reference({});
  auto config = Config("pp_for_resume", {"parallel.pp=2", "checkpoint.every=3"});
  ASSERT_TRUE(config.ok()) << config.status();
  MeshComms comms = Comms(1, 2, false);
  TrainSummary s;
  absl::Status st = Train(*config, &s, &comms);
  ASSERT_TRUE(st.ok()) << st;
  if (WorldRank() != 0) return;
  const fs::path dir = SharedDir();
  auto resumed = Config("resumed", {"checkpoint.resume=\"" + (dir / "pp_for_resume" / "ckpt" / "step_00000003.h5").string() + "\""});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  st = Train(*resumed, &s, nullptr);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(s.first_step, 4);
  std::vector<double> ref = Read(dir / ref_run / "metrics.jsonl", "loss");
  ASSERT_EQ(ref.size(), 6u);
  EXPECT_EQ(CompareCurves({ref.begin() + 3, ref.end()}, Read(dir / "resumed" / "metrics.jsonl", "loss"), 1e-5), "");
  EXPECT_EQ(CompareWeights(dir / ref_run / "ckpt" / "step_00000006.h5", dir / "resumed" / "ckpt" / "step_00000006.h5", 1e-5), "");
}

TEST(PipelineConfig, MeshesThatDoNotFitAreRefused) {
  if (WorldSize() != 2) GTEST_SKIP() << "needs 2 ranks";
  MeshComms comms = Comms(1, 2, false);
  TrainSummary s;
  auto too_few_layers = Config("bad1", {"parallel.pp=2", "model.layers=1"});
  ASSERT_TRUE(too_few_layers.ok());
  absl::Status st = Train(*too_few_layers, &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "model.layers=1 is fewer than parallel.pp=2 stages");
  auto too_many_ranks = Config("bad2", {"parallel.pp=2", "parallel.dp=2"});
  ASSERT_TRUE(too_many_ranks.ok());
  st = Train(*too_many_ranks, &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "parallel.dp=2 × parallel.pp=2 × parallel.tp=1 = 4 ranks, but the job has 2");
  auto zb = Config("bad3", {"parallel.pp=2", "parallel.schedule=\"zb-h1\""});
  ASSERT_TRUE(zb.ok());
  st = Train(*zb, &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("parallel.schedule=\"zb-h1\" needs a split backward"));
  // interleaved needs microbatches % pp == 0: 8 / (1·8) = 1 micro-batch.
  auto odd = Config("bad4", {"parallel.pp=2", "parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2",
                             "train.micro_batch_size=8"});
  ASSERT_TRUE(odd.ok());
  st = Train(*odd, &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("microbatches"));
}

// The checkers can fail: a curve or a weight off by 1e-4 relative is caught.
TEST(PipelineCheckers, CatchAnOffByOneE4) {
  EXPECT_EQ(CompareCurves({5.0, 4.0}, {5.0, 4.0 * (1 + 5e-6)}, 1e-5), "");
  EXPECT_THAT(CompareCurves({5.0, 4.0}, {5.0, 4.0 * (1 + 1e-4)}, 1e-5), ::testing::HasSubstr("step 2"));
  EXPECT_THAT(CompareCurves({5.0, 4.0}, {5.0}, 1e-5), ::testing::HasSubstr("lengths"));
  if (WorldRank() != 0) return;
  const std::string ref_run = Reference({});
  const fs::path ref = SharedDir() / ref_run / "ckpt" / "step_00000006.h5";
  auto data = ReadCheckpoint(ref.string());
  ASSERT_TRUE(data.ok());
  for (auto& t : data->tensors) {
    if (t.name == "params/layers.2.attn.wq") t.tensor.data<float>()[3] += 1e-4f * 16;  // well past 1e-5 in L2
  }
  const fs::path bad = SharedDir() / "perturbed.h5";
  ASSERT_TRUE(WriteCheckpoint(bad.string(), *data).ok());
  EXPECT_THAT(CompareWeights(ref, bad, 1e-5), ::testing::HasSubstr("params/layers.2.attn.wq"));
  EXPECT_EQ(CompareWeights(ref, ref, 1e-5), "");
}

}  // namespace
}  // namespace baton
