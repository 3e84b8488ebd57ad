// Rank discovery from fake launcher environments (Open MPI, Slurm, PMIx,
// none), the precedence between them, bad values, and the GPU-count check
// that refuses more ranks on a node than it has GPUs.
#include "launcher/rank_env.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
using Env = std::map<std::string, std::string>;

EnvLookup Fake(const Env& env) {
  return [env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
}

TEST(RankEnvTest, NoLauncherIsOneProcess) {
  auto e = DetectRankEnv(Fake({{"HOME", "/root"}}));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_FALSE(e->has_value());
}

TEST(RankEnvTest, OpenMpi) {
  auto e = DetectRankEnv(Fake({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                               {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                               {"OMPI_COMM_WORLD_NODE_RANK", "1"}}));
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->source, "openmpi");
  EXPECT_EQ((*e)->rank, 5);
  EXPECT_EQ((*e)->world, 8);
  EXPECT_EQ((*e)->local_rank, 1);
  EXPECT_EQ((*e)->local_size, 4);
  EXPECT_EQ((*e)->node, 1);
}

TEST(RankEnvTest, SlurmWinsOverPmixAndReadsTheNode) {
  // srun --mpi=pmix sets both; Slurm's names the node.
  auto e = DetectRankEnv(Fake({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "2"},
                               {"SLURM_NTASKS_PER_NODE", "4(x2)"}, {"SLURM_NODEID", "1"},
                               {"PMIX_RANK", "6"}}));
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->source, "slurm");
  EXPECT_EQ((*e)->rank, 6);
  EXPECT_EQ((*e)->local_rank, 2);
  EXPECT_EQ((*e)->local_size, 0);  // "4(x2)" is not trusted as a count
  EXPECT_EQ((*e)->node, 1);
  EXPECT_THAT(DescribeRankEnv(**e), HasSubstr("8 from Slurm"));
}

TEST(RankEnvTest, OpenMpiWinsOverSlurm) {
  // mpirun inside an allocation: the batch shell's SLURM_* describe the allocation, not this rank.
  auto e = DetectRankEnv(Fake({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"},
                               {"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}}));
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->source, "openmpi");
  EXPECT_EQ((*e)->rank, 3);
}

TEST(RankEnvTest, SlurmBatchShellWithoutTasksIsNotALaunch) {
  auto e = DetectRankEnv(Fake({{"SLURM_PROCID", "0"}, {"SLURM_JOB_ID", "7"}}));
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->has_value());
}

TEST(RankEnvTest, PmixAlone) {
  auto e = DetectRankEnv(Fake({{"PMIX_RANK", "1"}, {"PMIX_SIZE", "2"}}));
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->source, "pmix");
  EXPECT_EQ((*e)->rank, 1);
  EXPECT_EQ((*e)->world, 2);
}

TEST(RankEnvTest, BadValuesNameTheVariable) {
  auto e = DetectRankEnv(Fake({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "4"}}));
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("SLURM_PROCID=x"));
  e = DetectRankEnv(Fake({{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "4"}}));
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("SLURM_PROCID=4 is not below SLURM_NTASKS=4"));
}

TEST(RankEnvTest, MoreRanksThanGpusOnANodeIsRefused) {
  RankEnv e;
  e.rank = 9, e.world = 16, e.local_rank = 1, e.local_size = 8, e.node = 1, e.source = "slurm";
  EXPECT_TRUE(CheckGpusPerNode(e, 8).ok());
  EXPECT_TRUE(CheckGpusPerNode(e, 0).ok());  // CPU run
  absl::Status st = CheckGpusPerNode(e, 4);
  ASSERT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("node 1 runs 8 ranks but has 4 GPUs"));
  e.local_size = 0, e.local_rank = 4;  // count unknown: the local rank still must fit
  EXPECT_FALSE(CheckGpusPerNode(e, 4).ok());
  e.local_rank = 3;
  EXPECT_TRUE(CheckGpusPerNode(e, 4).ok());
}

TEST(RankEnvTest, GpuIsTheLocalRankUnlessSlurmBindsOnePerTask) {
  Env env = {{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "3"}, {"SLURM_NTASKS_PER_NODE", "4"}};
  auto gpu = GpuOfThisRank(Fake(env), 4);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(*gpu, 3);
  EXPECT_FALSE(GpuOfThisRank(Fake(env), 2).ok());
  env["SLURM_GPUS_PER_TASK"] = "1";
  gpu = GpuOfThisRank(Fake(env), 1);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(*gpu, 0);
}

// train.share_gpus: several ranks on one GPU on purpose (tp or pp tried on a
// single device) take local rank mod GPUs instead of the refusal.
TEST(RankEnvTest, SharingGpusIsAllowedWhenAskedFor) {
  Env env = {{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"},
             {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
  EXPECT_FALSE(GpuOfThisRank(Fake(env), 2).ok());
  auto gpu = GpuOfThisRank(Fake(env), 2, /*share=*/true);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(*gpu, 1);
}

}  // namespace
}  // namespace baton
