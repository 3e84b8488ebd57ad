// The layout-invariance matrix (DESIGN.md invariant 1), under mpiexec -n
// 2, 4 and 8: every (dp, pp, tp) mesh of the list — (2,1,1),
// (1,2,1), (1,1,2), (2,2,1), (1,2,2), (2,1,2), (2,2,2), (1,4,1) — with each
// schedule, virtual stages, recompute policies, sequence parallelism, ZeRO-1
// and p2p over MPI and UCX, gives step for step the loss of the
// single-process run, the same validation loss and the same final weights
// (relative 1e-5). Checkpoints are logical: one written by (dp2, pp2, tp1)
// resumes with (1,1,2), (1,4,1) and (1,1,1) on the uninterrupted curve.
// Meshes that do not fit the model are refused with one line naming the
// numbers.
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
#include "launcher/train.h"
#include "parallel/ucx_p2p.h"
#include "tests/launcher/mpi_train_fixture.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

using ::baton::testing::Distance;
using ::baton::testing::MeshCommsFor;
using ::baton::testing::ReadMetric;
using ::baton::testing::TensorDistance;
using ::baton::testing::TinyJobConfig;
using ::baton::testing::WorldRank;
using ::baton::testing::WorldSize;

fs::path SharedDir() { return ::baton::testing::SharedCorpusDir("layout_test", 7, 13); }

// 4 layers (interleaved v=2 over pp=2 and pp=4 both fit), 4 micro-batches
// of 2 per step at dp=1. Validation runs at the last step.
absl::StatusOr<JobConfig> Config(const std::string& run, std::vector<std::string> extra) {
  extra.insert(extra.begin(), {"train.eval_every=6", "train.eval_batches=2"});
  return TinyJobConfig(SharedDir(), run, "layout_test.toml", 4, extra);
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
    const TensorDistance d = Distance(a->tensors[i].tensor, b->tensors[i].tensor);
    // Relative L2, with an absolute floor of 5e-6 RMS: a tensor whose grads
    // are rounding noise (a k bias: softmax is nearly blind to it) gets
    // Adam steps of size lr from that noise, so its relative error is not
    // a measure of the layout's correctness (dp2 alone shows 6e-5 relative, 1.1e-6 RMS on a k bias).
    if (!(d.relative <= rtol || d.rms <= 5e-6)) {
      return absl::StrCat(a->tensors[i].name, ": relative L2 ", d.relative, ", RMS error ", d.rms);
    }
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

struct Layout {
  const char* name;
  int dp, pp, tp;
  std::vector<std::string> sets;        // schedule, recompute, ...
  std::vector<std::string> model_sets;  // also given to the reference
  bool ucx = false;
};

class LayoutInvariance : public ::testing::TestWithParam<Layout> {};

TEST_P(LayoutInvariance, MatchesSingleProcess) {
  const Layout& layout = GetParam();
  const int ranks = layout.dp * layout.pp * layout.tp;
  if (ranks != WorldSize()) GTEST_SKIP() << "needs " << ranks << " ranks";
  const std::string ref_run = Reference(layout.model_sets);
  const std::string run = std::string("layout_") + layout.name;
  std::vector<std::string> sets = {"parallel.dp=" + std::to_string(layout.dp),
                                   "parallel.pp=" + std::to_string(layout.pp),
                                   "parallel.tp=" + std::to_string(layout.tp),
                                   "output.trace=\"" + (SharedDir() / run / "trace.json").string() + "\""};
  sets.insert(sets.end(), layout.sets.begin(), layout.sets.end());
  sets.insert(sets.end(), layout.model_sets.begin(), layout.model_sets.end());
  auto config = Config(run, sets);
  ASSERT_TRUE(config.ok()) << config.status();
  MeshComms comms = MeshCommsFor(layout.dp, layout.pp, layout.tp, layout.ucx);
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
  const std::vector<double> ref = ReadMetric(dir / ref_run / "metrics.jsonl", "loss");
  ASSERT_EQ(ref.size(), 6u);
  EXPECT_EQ(CompareCurves(ref, ReadMetric(dir / run / "metrics.jsonl", "loss"), 1e-5), "");
  EXPECT_EQ(CompareCurves(ReadMetric(dir / ref_run / "metrics.jsonl", "val_loss"),
                          ReadMetric(dir / run / "metrics.jsonl", "val_loss"), 1e-5), "");
  EXPECT_EQ(CompareWeights(dir / ref_run / "ckpt" / "step_00000006.h5", dir / run / "ckpt" / "step_00000006.h5", 1e-5), "");
  if (layout.dp > 1) {  // the gradient sums start while the backward runs
    EXPECT_GT(s.dp_buckets, 0);
    EXPECT_EQ(s.dp_buckets_early, s.dp_buckets);
  }
  if (layout.pp == 1) return;
  // The last step's timeline: one row per rank, forward events named "F<mb>.<chunk>".
  std::ifstream trace(dir / run / "trace.json");
  std::stringstream text;
  text << trace.rdbuf();
  EXPECT_THAT(text.str(), ::testing::HasSubstr("\"F0.0\""));
  EXPECT_THAT(text.str(), ::testing::HasSubstr(absl::StrCat("rank ", WorldSize() - 1)));
}

// Kept small for a 2-core CI machine: 6 steps of a 4-layer, dim-32 model.
INSTANTIATE_TEST_SUITE_P(
    Layouts, LayoutInvariance,
    ::testing::Values(
        // 1 rank under MPI: the collective checkpoint writer and reader, a mesh of one
        Layout{"mpi1", 1, 1, 1, {}, {}},
        // 2 ranks
        Layout{"dp2", 2, 1, 1, {}, {}},
        Layout{"dp2_zero", 2, 1, 1, {"parallel.zero=1", "parallel.bucket_mb=0.001"}, {}},
        Layout{"pp2_gpipe", 1, 2, 1, {"parallel.schedule=\"gpipe\""}, {}},
        Layout{"pp2_1f1b", 1, 2, 1, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"pp2_interleaved", 1, 2, 1, {"parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2"}, {}},
        Layout{"pp2_zb_h1", 1, 2, 1, {"parallel.schedule=\"zb-h1\""}, {}},
        Layout{"pp2_uneven_stages", 1, 2, 1, {"parallel.layers_per_stage=[1, 3]"}, {}},
        Layout{"pp2_full_recompute", 1, 2, 1, {"recompute.policy=\"full\""}, {}},
        Layout{"pp2_untied", 1, 2, 1, {"parallel.schedule=\"1f1b\""}, {"model.tie_embeddings=false"}},
        Layout{"pp2_ucx", 1, 2, 1, {"parallel.schedule=\"1f1b\"", "parallel.p2p=\"ucx\""}, {}, true},
        Layout{"tp2", 1, 1, 2, {}, {}},
        Layout{"tp2_sp", 1, 1, 2, {"parallel.sequence_parallel=true"}, {}},
        Layout{"tp2_selective_qkv_bias", 1, 1, 2, {"recompute.policy=\"selective\""},
               {"model.qkv_bias=true", "model.tie_embeddings=false"}},
        Layout{"dp2_qkv_bias", 2, 1, 1, {"recompute.policy=\"selective\""}, {"model.qkv_bias=true", "model.tie_embeddings=false"}},
        Layout{"tp2_every_k", 1, 1, 2, {"recompute.policy=\"every_k\"", "recompute.every_k=2"}, {}},
        // 4 ranks
        Layout{"dp2_pp2", 2, 2, 1, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"dp2_pp2_zero_ucx", 2, 2, 1, {"parallel.zero=1", "parallel.p2p=\"ucx\""}, {}, true},
        Layout{"pp4", 1, 4, 1, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"pp4_untied_selective", 1, 4, 1, {"recompute.policy=\"selective\""}, {"model.tie_embeddings=false"}},
        Layout{"pp4_zb_h1_full", 1, 4, 1, {"parallel.schedule=\"zb-h1\"", "recompute.policy=\"full\""}, {}},
        Layout{"dp2_pp2_zb_h1_ucx", 2, 2, 1, {"parallel.schedule=\"zb-h1\"", "parallel.p2p=\"ucx\"", "parallel.bucket_mb=0.01"}, {}, true},
        Layout{"pp2_tp2", 1, 2, 2, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"pp2_tp2_sp_zb_h1", 1, 2, 2, {"parallel.schedule=\"zb-h1\"", "parallel.sequence_parallel=true"}, {}},
        Layout{"pp2_tp2_sp_interleaved", 1, 2, 2,
               {"parallel.sequence_parallel=true", "parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2"}, {}},
        Layout{"dp2_tp2", 2, 1, 2, {}, {}},
        Layout{"dp2_tp2_zero_full", 2, 1, 2, {"parallel.zero=1", "recompute.policy=\"full\""}, {}},
        // 8 ranks
        Layout{"dp2_pp2_tp2", 2, 2, 2, {"parallel.schedule=\"1f1b\""}, {}},
        Layout{"dp2_pp2_tp2_sp_zero_gpipe", 2, 2, 2,
               {"parallel.sequence_parallel=true", "parallel.zero=1", "parallel.schedule=\"gpipe\""},
               {"model.tie_embeddings=false"}}),
    [](const ::testing::TestParamInfo<Layout>& info) { return std::string(info.param.name); });

// A pp=2 checkpoint is logical: one process resumes it on the same curve.
TEST(PipelineCheckpoint, ResumesInOneProcess) {
  if (WorldSize() != 2) GTEST_SKIP() << "needs 2 ranks";
  const std::string ref_run = Reference({});
  auto config = Config("pp_for_resume", {"parallel.pp=2", "checkpoint.every=3"});
  ASSERT_TRUE(config.ok()) << config.status();
  MeshComms comms = MeshCommsFor(1, 2, 1);
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
  std::vector<double> ref = ReadMetric(dir / ref_run / "metrics.jsonl", "loss");
  ASSERT_EQ(ref.size(), 6u);
  EXPECT_EQ(CompareCurves({ref.begin() + 3, ref.end()}, ReadMetric(dir / "resumed" / "metrics.jsonl", "loss"), 1e-5), "");
  EXPECT_EQ(CompareWeights(dir / ref_run / "ckpt" / "step_00000006.h5", dir / "resumed" / "ckpt" / "step_00000006.h5", 1e-5), "");
}

TEST(PipelineConfig, MeshesThatDoNotFitAreRefused) {
  if (WorldSize() != 2) GTEST_SKIP() << "needs 2 ranks";
  MeshComms comms = MeshCommsFor(1, 2, 1);
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
  auto uneven = Config("bad3", {"parallel.pp=2", "parallel.layers_per_stage=[1, 2]"});
  ASSERT_TRUE(uneven.ok()) << uneven.status();
  st = Train(*uneven, &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "parallel.layers_per_stage sums to 3 layers, but model.layers=4");
  // interleaved needs microbatches % pp == 0: 8 / (1·8) = 1 micro-batch.
  auto odd = Config("bad4", {"parallel.pp=2", "parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2",
                             "train.micro_batch_size=8"});
  ASSERT_TRUE(odd.ok());
  st = Train(*odd, &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("microbatches"));
}

// A checkpoint written by (dp2, pp2, tp1) at step 3 is one logical file:
// (1,4,1) on the same 4 ranks, (1,1,2) on two of them and (1,1,1) on one
// each resume it on the uninterrupted curve, to the same final weights.
TEST(Resharding, DpPpCheckpointResumesInOtherLayouts) {
  if (WorldSize() != 4) GTEST_SKIP() << "needs 4 ranks";
  const std::string ref_run = Reference({});
  const fs::path dir = SharedDir();
  {
    auto config = Config("reshard_src", {"parallel.dp=2", "parallel.pp=2", "checkpoint.every=3"});
    ASSERT_TRUE(config.ok()) << config.status();
    MeshComms comms = MeshCommsFor(2, 2, 1);
    TrainSummary s;
    absl::Status st = Train(*config, &s, &comms);
    ASSERT_TRUE(st.ok()) << st;
  }
  const std::string from = "checkpoint.resume=\"" + (dir / "reshard_src" / "ckpt" / "step_00000003.h5").string() + "\"";
  struct Target {
    const char* run;
    int dp, pp, tp;
  };
  const std::vector<double> ref = ReadMetric(dir / ref_run / "metrics.jsonl", "loss");
  for (const Target& target : {Target{"reshard_141", 1, 4, 1}, Target{"reshard_112", 1, 1, 2},
                               Target{"reshard_111", 1, 1, 1}}) {
    const int ranks = target.dp * target.pp * target.tp;
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, WorldRank() < ranks ? 0 : MPI_UNDEFINED, WorldRank(), &sub);
    if (sub != MPI_COMM_NULL) {
      auto config = Config(target.run, {"parallel.dp=" + std::to_string(target.dp),
                                        "parallel.pp=" + std::to_string(target.pp),
                                        "parallel.tp=" + std::to_string(target.tp), from});
      ASSERT_TRUE(config.ok()) << config.status();
      TrainSummary s;
      absl::Status st;
      if (ranks == 1) {
        st = Train(*config, &s, nullptr);
      } else {
        MeshComms comms = MeshCommsFor(target.dp, target.pp, target.tp, false, sub);
        st = Train(*config, &s, &comms);
      }
      ASSERT_TRUE(st.ok()) << target.run << ": " << st;
      EXPECT_EQ(s.first_step, 4) << target.run;
      MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (WorldRank() == 0) {
      ASSERT_EQ(ref.size(), 6u);
      EXPECT_EQ(CompareCurves({ref.begin() + 3, ref.end()}, ReadMetric(dir / target.run / "metrics.jsonl", "loss"), 1e-5),
                "") << target.run;
      EXPECT_EQ(CompareWeights(dir / ref_run / "ckpt" / "step_00000006.h5",
                               dir / target.run / "ckpt" / "step_00000006.h5", 1e-5), "") << target.run;
    }
  }
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
