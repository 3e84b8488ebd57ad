// Layout invariance for data parallelism (DESIGN.md invariant 1), under
// mpiexec: training with dp = world size gives, step for step, the loss of
// the single-process run and the same final weights (relative 1e-5), for
// several micro-batch splits and recompute policies; and ranks holding
// different configs are refused with a line naming the rank.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launcher/train.h"
#include "tests/launcher/mpi_train_fixture.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

using ::baton::testing::Distance;
using ::baton::testing::MeshCommsFor;
using ::baton::testing::ReadMetric;
using ::baton::testing::TinyJobConfig;
using ::baton::testing::WorldRank;
using ::baton::testing::WorldSize;

fs::path SharedDir() { return ::baton::testing::SharedCorpusDir("dp_test", 99, 17); }

JobConfig Config(const std::string& run, int dp, std::vector<std::string> extra) {
  extra.insert(extra.begin(), "parallel.dp=" + std::to_string(dp));
  auto c = TinyJobConfig(SharedDir(), run, "dp_test.toml", 2, extra);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

struct Layout {
  const char* name;
  std::vector<std::string> sets;
};

class DataParallelInvariance : public ::testing::TestWithParam<Layout> {};

TEST_P(DataParallelInvariance, MatchesSingleProcess) {
  const Layout& layout = GetParam();
  const std::string ref_run = std::string("ref_") + layout.name;
  const std::string dp_run = std::string("dp_") + layout.name;
  if (WorldRank() == 0) {  // the single-process reference
    TrainSummary s;
    ASSERT_TRUE(Train(Config(ref_run, 1, layout.sets), &s, nullptr).ok());
  }
  MeshComms comms = MeshCommsFor(WorldSize(), 1, 1);
  TrainSummary s;
  absl::Status st = Train(Config(dp_run, WorldSize(), layout.sets), &s, &comms);
  ASSERT_TRUE(st.ok()) << st;
  if (WorldRank() != 0) return;

  const fs::path dir = SharedDir();
  std::vector<double> ref = ReadMetric(dir / ref_run / "metrics.jsonl", "loss");
  std::vector<double> got = ReadMetric(dir / dp_run / "metrics.jsonl", "loss");
  ASSERT_EQ(ref.size(), 6u);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_NEAR(got[i], ref[i], 1e-5 * std::abs(ref[i])) << "step " << i + 1;
  }
  auto a = ReadCheckpoint((dir / ref_run / "ckpt" / "step_00000006.h5").string());
  auto b = ReadCheckpoint((dir / dp_run / "ckpt" / "step_00000006.h5").string());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->tensors.size(), b->tensors.size());
  for (size_t i = 0; i < a->tensors.size(); ++i) {
    if (a->tensors[i].name.rfind("params/", 0) != 0) continue;
    EXPECT_LE(Distance(a->tensors[i].tensor, b->tensors[i].tensor).relative, 1e-5)
        << a->tensors[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, DataParallelInvariance,
    ::testing::Values(Layout{"plain", {}}, Layout{"micro1", {"train.micro_batch_size=1"}},
                      Layout{"full_recompute", {"recompute.policy=\"full\""}},
                      Layout{"selective", {"recompute.policy=\"selective\""}},
                      Layout{"zero1", {"parallel.zero=1"}}),
    [](const ::testing::TestParamInfo<Layout>& info) { return std::string(info.param.name); });

// ZeRO-1 shards Adam state and the update over dp; the checkpoint gathers
// the moments back: every tensor (weights and moments) equals plain dp's.
TEST(DataParallel, ZeroOneCheckpointEqualsPlainDataParallel) {
  if (WorldSize() < 2) GTEST_SKIP() << "needs 2 ranks";
  MeshComms comms = MeshCommsFor(WorldSize(), 1, 1);
  TrainSummary s;
  ASSERT_TRUE(Train(Config("plain_dp", WorldSize(), {}), &s, &comms).ok());
  ASSERT_TRUE(Train(Config("zero_dp", WorldSize(), {"parallel.zero=1"}), &s, &comms).ok());
  if (WorldRank() != 0) return;
  const fs::path dir = SharedDir();
  auto a = ReadCheckpoint((dir / "plain_dp" / "ckpt" / "step_00000006.h5").string());
  auto b = ReadCheckpoint((dir / "zero_dp" / "ckpt" / "step_00000006.h5").string());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->tensors.size(), b->tensors.size());
  for (size_t i = 0; i < a->tensors.size(); ++i) {
    ASSERT_EQ(a->tensors[i].name, b->tensors[i].name);
    EXPECT_EQ(std::memcmp(a->tensors[i].tensor.raw(), b->tensors[i].tensor.raw(), a->tensors[i].tensor.nbytes()), 0)
        << a->tensors[i].name;
  }
}

TEST(DataParallel, DifferentConfigsAreRefusedNamingTheRank) {
  if (WorldSize() < 2) GTEST_SKIP() << "needs 2 ranks";
  MeshComms comms = MeshCommsFor(WorldSize(), 1, 1);
  // The last rank asks for another learning rate.
  std::vector<std::string> sets;
  if (WorldRank() == WorldSize() - 1) sets.push_back("train.lr=0.5");
  TrainSummary s;
  absl::Status st = Train(Config("mismatch", WorldSize(), sets), &s, &comms);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              ::testing::HasSubstr("rank " + std::to_string(WorldSize() - 1) + " holds a different config"));
}

}  // namespace
}  // namespace baton
