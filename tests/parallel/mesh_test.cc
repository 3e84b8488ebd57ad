// Tests of the dp × pp × tp mesh without MPI: the documented rank order
// (tp fastest, then dp, then pp), group lists and split colours that agree
// across ranks, and the one-line errors for meshes that do not fit the job.
#include "parallel/mesh.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Mesh MustCreate(MeshShape shape, int world, int rank) {
  absl::StatusOr<Mesh> m = Mesh::Create(shape, world, rank);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(MeshTest, RankOrderIsTpFastestThenDpThenPp) {
  // dp=2 pp=2 tp=2: rank 5 = tp 1 + 2·(dp 0 + 2·pp 1).
  Mesh m = MustCreate({.dp = 2, .pp = 2, .tp = 2}, 8, 5);
  EXPECT_EQ(m.tp_rank(), 1);
  EXPECT_EQ(m.dp_rank(), 0);
  EXPECT_EQ(m.pp_rank(), 1);
  EXPECT_THAT(m.TpGroup(), ElementsAre(4, 5));
  EXPECT_THAT(m.DpGroup(), ElementsAre(5, 7));
  EXPECT_THAT(m.PpGroup(), ElementsAre(1, 5));
  EXPECT_EQ(m.RankOf(1, 0, 1), 3);
  EXPECT_EQ(m.RankOf(0, 1, 0), 4);
  EXPECT_EQ(m.DebugString(), "rank 5 of 8: dp=0 pp=1 tp=1 (dp=2 pp=2 tp=2)");
  EXPECT_FALSE(m.is_first_stage());
  EXPECT_TRUE(m.is_last_stage());
}

TEST(MeshTest, UnevenDegreesPinnedCoordinates) {
  // dp=3 pp=2 tp=4 (24 ranks): rank 17 = tp 1 + 4·(dp 1 + 3·pp 1).
  Mesh m = MustCreate({.dp = 3, .pp = 2, .tp = 4}, 24, 17);
  EXPECT_EQ(m.coord(), (MeshCoord{.dp = 1, .pp = 1, .tp = 1}));
  EXPECT_THAT(m.TpGroup(), ElementsAre(16, 17, 18, 19));
  EXPECT_THAT(m.DpGroup(), ElementsAre(13, 17, 21));
  EXPECT_THAT(m.PpGroup(), ElementsAre(5, 17));
}

TEST(MeshTest, SingleRankIsItsOwnGroupOnEveryAxis) {
  Mesh m = MustCreate({}, 1, 0);
  EXPECT_THAT(m.TpGroup(), ElementsAre(0));
  EXPECT_THAT(m.DpGroup(), ElementsAre(0));
  EXPECT_THAT(m.PpGroup(), ElementsAre(0));
  EXPECT_TRUE(m.is_first_stage());
  EXPECT_TRUE(m.is_last_stage());
}

// For every rank of several meshes: RankOf inverts CoordOf, the rank sits at
// its own coordinate in each group list, and GroupId is equal exactly for
// members of one group (what MPI_Comm_split needs).
TEST(MeshTest, GroupsAndSplitColoursAgreeAcrossRanks) {
  const std::vector<MeshShape> shapes = {
      {1, 1, 8}, {1, 8, 1}, {8, 1, 1}, {2, 2, 2}, {2, 1, 4}, {4, 2, 1}, {3, 2, 4}, {1, 4, 1}};
  for (const MeshShape& s : shapes) {
    const int world = s.world();
    std::vector<Mesh> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(MustCreate(s, world, r));
    for (MeshAxis axis : {MeshAxis::kDp, MeshAxis::kPp, MeshAxis::kTp}) {
      std::set<int> ids;
      for (const Mesh& m : ranks) {
        SCOPED_TRACE(m.DebugString() + " axis " + MeshAxisName(axis));
        EXPECT_EQ(m.RankOf(m.coord()), m.rank());
        std::vector<int> group = m.Group(axis);
        ASSERT_EQ(static_cast<int>(group.size()), m.Size(axis));
        EXPECT_EQ(group[m.Coord(axis)], m.rank());
        EXPECT_GE(m.GroupId(axis), 0);
        EXPECT_LT(m.GroupId(axis), world / m.Size(axis));
        ids.insert(m.GroupId(axis));
        for (int member : group) {
          EXPECT_EQ(ranks[member].GroupId(axis), m.GroupId(axis));
          EXPECT_EQ(ranks[member].Group(axis), group);
        }
      }
      EXPECT_EQ(static_cast<int>(ids.size()), world / ranks[0].Size(axis));
    }
  }
}

TEST(MeshTest, ProductNotWorldNamesTheNumbers) {
  absl::StatusOr<Mesh> m = Mesh::Create({.dp = 2, .pp = 2, .tp = 2}, 4, 0);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("parallel.dp=2 × parallel.pp=2 × parallel.tp=2 = 8 ranks, but the job has 4"));
}

TEST(MeshTest, DegreeBelowOneIsRefused) {
  absl::StatusOr<Mesh> m = Mesh::Create({.dp = 1, .pp = 0, .tp = 4}, 4, 0);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("parallel.pp=0 must be at least 1"));
}

TEST(MeshTest, RankOutsideWorldIsRefused) {
  absl::StatusOr<Mesh> m = Mesh::Create({.dp = 2, .pp = 1, .tp = 1}, 2, 2);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("rank 2 is outside the world of 2"));
}

TEST(MeshTest, HugeDegreesDoNotOverflowIntoAMatch) {
  // 65536 · 65536 · 1 wraps to 0 in 32 bits; the check is in 64.
  absl::StatusOr<Mesh> m = Mesh::Create({.dp = 65536, .pp = 65536, .tp = 1}, 0, 0);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("= 4294967296 ranks"));
}

}  // namespace
}  // namespace baton
