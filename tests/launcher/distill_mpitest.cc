// Layout invariance for online distillation (DESIGN.md invariant 1), under
// mpiexec: distilling with dp, pp (1F1B, interleaved, zero-bubble; the
// teacher's activations travelling the pipeline beside the student's) or tp (vocab-parallel DistillLoss, the
// teacher tensor-parallel too) equal to the world size gives, step for
// step, the single-process run's loss (relative 1e-5) and KL, with a random
// student and with one initialised from the teacher's layers (each rank
// its slice of the init); and offline, from the teacher's dumped top-k
// logits, the same under every layout and equal to online at k = V.
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "launcher/checkpoint_model.h"
#include "launcher/distill.h"
#include "launcher/train.h"
#include "nlohmann/json.hpp"
#include "parallel/mesh.h"
#include "tests/launcher/mpi_train_fixture.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

using ::baton::testing::WorldRank;
using ::baton::testing::WorldSize;

fs::path SharedDir() { return ::baton::testing::SharedCorpusDir("distill_mpitest", 5, 23); }

constexpr char kJob[] = R"(
[train]
steps = 4
seq_len = 16
micro_batch_size = 2
global_batch_size = 8
lr = 1e-2
warmup_steps = 1
[checkpoint]
resume = "none"
[output]
progress = "lines"
[distill]
alpha = 0.6
temperature = 1.5
)";

JobConfig Config(const std::string& model, const std::string& run, std::vector<std::string> sets) {
  const fs::path dir = SharedDir();
  sets.push_back("data.path=\"" + (dir / "corpus").string() + "\"");
  sets.push_back("checkpoint.dir=\"" + (dir / run / "ckpt").string() + "\"");
  sets.push_back("output.metrics=\"" + (dir / run / "metrics.jsonl").string() + "\"");
  auto c = ParseJobConfig(model + kJob, run + ".toml", sets);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::string Model(int layers) {
  return "[model]\nlayers = " + std::to_string(layers) +
         "\ndim = 32\nheads = 4\nkv_heads = 2\nffn_dim = 48\nvocab_size = 258\n";
}

// The teacher: 4 layers trained 3 steps by rank 0 (once per process).
std::string Teacher() {
  static std::string path;
  if (!path.empty()) return path;
  path = (SharedDir() / "teacher" / "ckpt" / "step_00000003.h5").string();
  if (WorldRank() == 0) {
    TrainSummary s;
    const absl::Status st = Train(Config(Model(4), "teacher", {"train.steps=3"}), &s);
    EXPECT_TRUE(st.ok()) << st;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

// The teacher's top-258 (= V) logits of every training sample, dumped once by rank 0.
std::vector<std::string> OfflineSets() {
  static std::string dir;
  const std::string logits = (SharedDir() / "teacher_logits").string();
  std::vector<std::string> sets = {"distill.mode=\"offline\"", "distill.topk=258",
                                   "distill.logits_path=\"" + logits + "\""};
  if (dir.empty()) {
    dir = logits;
    if (WorldRank() == 0) {
      std::vector<std::string> with = sets;
      with.push_back("teacher.checkpoint=\"" + Teacher() + "\"");
      auto teacher = LoadCheckpointModel(Teacher(), Device::kCpu);
      EXPECT_TRUE(teacher.ok()) << teacher.status();
      auto dumped = DumpTeacherLogits(Config(Model(2), "dump", with), teacher->model);
      EXPECT_TRUE(dumped.ok()) << dumped.status();
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return sets;
}

std::vector<std::pair<double, double>> LossAndKl(const fs::path& metrics) {
  std::vector<std::pair<double, double>> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back({j["loss"].get<double>(), j["kl"].get<double>()});
  }
  return out;
}

absl::Status Distill(const JobConfig& config, MeshComms* comms) {
  BATON_ASSIGN_OR_RETURN(const DriverExtras extras, OnlineDistillExtras(config));
  TrainSummary s;
  return Train(config, &s, comms, &extras);
}

struct Layout {
  const char* name;
  int dp, pp, tp;
  std::vector<std::string> sets;
  int student_layers = 2;
  bool offline = false;  // the teacher's top-k logits dumped by rank 0 (k = V)
};

class DistillInvariance : public ::testing::TestWithParam<Layout> {};

TEST_P(DistillInvariance, MatchesSingleProcess) {
  const Layout& l = GetParam();
  const int n = WorldSize();
  const int dp = l.dp, pp = l.pp, tp = l.tp;
  if (dp * pp * tp != n) GTEST_SKIP() << "layout for another world size";
  std::vector<std::string> sets = l.sets;
  sets.push_back("teacher.checkpoint=\"" + Teacher() + "\"");
  if (l.offline) {
    for (const std::string& o : OfflineSets()) sets.push_back(o);
  }
  const std::string ref_run = std::string("ref_") + l.name, run = std::string("mesh_") + l.name;
  if (WorldRank() == 0) {
    const absl::Status st = Distill(Config(Model(l.student_layers), ref_run, sets), nullptr);
    ASSERT_TRUE(st.ok()) << st;
  }
  sets.push_back("parallel.dp=" + std::to_string(dp));
  sets.push_back("parallel.pp=" + std::to_string(pp));
  sets.push_back("parallel.tp=" + std::to_string(tp));
  auto mesh = Mesh::Create({dp, pp, tp}, n, WorldRank());
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  auto comms = CreateMpiMeshComms(*mesh);
  ASSERT_TRUE(comms.ok()) << comms.status();
  const absl::Status st = Distill(Config(Model(l.student_layers), run, sets), &*comms);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(comms->Close().ok());
  if (WorldRank() != 0) return;
  const auto ref = LossAndKl(SharedDir() / ref_run / "metrics.jsonl");
  const auto got = LossAndKl(SharedDir() / run / "metrics.jsonl");
  ASSERT_EQ(ref.size(), 4u);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(got[i].first, ref[i].first, 1e-5 * std::abs(ref[i].first)) << "loss, step " << i + 1;
    // The KL is a difference of terms of the loss's size (Σp(t−s)/T − lse + lse):
    // its rounding is relative to the loss, not to itself.
    EXPECT_NEAR(got[i].second, ref[i].second, 1e-5 * std::abs(ref[i].first)) << "kl, step " << i + 1;
    EXPECT_GT(ref[i].second, 0.0);
  }
}

// Offline at k = V: its loss is the online loss (the KL's gap is 0), so the
// two single-process runs agree step for step.
TEST(DistillOffline, FullTopKEqualsOnline) {
  const std::vector<std::string> offline = OfflineSets();
  if (WorldRank() != 0) return;
  std::vector<std::string> sets = {"teacher.checkpoint=\"" + Teacher() + "\""};
  ASSERT_TRUE(Distill(Config(Model(2), "full_online", sets), nullptr).ok());
  sets.insert(sets.end(), offline.begin(), offline.end());
  const absl::Status st = Distill(Config(Model(2), "full_offline", sets), nullptr);
  ASSERT_TRUE(st.ok()) << st;
  const auto on = LossAndKl(SharedDir() / "full_online" / "metrics.jsonl");
  const auto off = LossAndKl(SharedDir() / "full_offline" / "metrics.jsonl");
  ASSERT_EQ(on.size(), 4u);
  ASSERT_EQ(off.size(), on.size());
  for (size_t i = 0; i < on.size(); ++i) {
    EXPECT_NEAR(off[i].first, on[i].first, 1e-5 * std::abs(on[i].first)) << "loss, step " << i + 1;
  }
}

// Each runs where dp·pp·tp is the world size.
INSTANTIATE_TEST_SUITE_P(
    Layouts, DistillInvariance,
    ::testing::Values(Layout{"dp", 2, 1, 1, {}}, Layout{"pp", 1, 2, 1, {}},
                      Layout{"pp_interleaved", 1, 2, 1,
                             {"parallel.schedule=\"interleaved\"", "parallel.virtual_stages=2"}, 4},
                      Layout{"pp_zb", 1, 2, 1, {"parallel.schedule=\"zb-h1\""}},
                      Layout{"tp", 1, 1, 2, {}}, Layout{"tp_init", 1, 1, 2, {"student.init=\"teacher-layers\""}},
                      Layout{"dp_pp_tp", 2, 2, 2, {"student.init=\"teacher-layers\""}},
                      Layout{"offline_dp", 2, 1, 1, {}, 2, true}, Layout{"offline_pp", 1, 2, 1, {}, 2, true},
                      Layout{"offline_tp", 1, 1, 2, {}, 2, true},
                      Layout{"offline_dp_pp_tp", 2, 2, 2, {}, 2, true}),
    [](const ::testing::TestParamInfo<Layout>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace baton
