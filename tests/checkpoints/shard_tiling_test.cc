// The tiling check of distributed checkpoint writes, alone: no MPI, no
// HDF5 file. Entries stand for what the ranks hold; every way slices can
// fail to cover a tensor exactly once (gap, overlap, short cover, no
// writer, mixed dims, disagreeing ranks, a slice outside the tensor) is an
// InvalidArgument naming the tensor, and good tilings plan the right
// writers in offset order and the right number of collective rounds.
#include "checkpoints/shard_tiling.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

ShardEntry Whole(const std::string& name, Shape full, int rank, bool write = true) {
  ShardEntry e;
  e.name = name;
  e.full = full;
  e.local = full;
  e.rank = rank;
  e.write = write;
  return e;
}

ShardEntry Slice(const std::string& name, Shape full, int dim, int64_t offset, int64_t len, int rank) {
  ShardEntry e = Whole(name, full, rank);
  e.dim = dim;
  e.offset = offset;
  e.local[dim] = len;
  return e;
}

// The message of the error TileShards gives, or "ok".
std::string Verdict(const std::vector<ShardEntry>& entries) {
  absl::StatusOr<TensorPlans> plans = TileShards(entries, "ck.h5");
  if (plans.ok()) return "ok";
  EXPECT_EQ(plans.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(plans.status().message());
}

TEST(ShardTilingTest, PlansWritersInOffsetOrderAndCountsRounds) {
  // Rows of a 13 x 6 tensor from three ranks, handed over out of order;
  // rank 1 writes two slices (two collective rounds), and a replica on
  // rank 2 that it does not write.
  const Shape full = {13, 6};
  std::vector<ShardEntry> entries = {Slice("params/embed", full, 0, 9, 4, 1), Slice("params/embed", full, 0, 0, 5, 0),
                                     Slice("params/embed", full, 0, 5, 4, 1), Whole("params/norm", {6}, 2, false),
                                     Whole("params/norm", {6}, 0)};
  absl::StatusOr<TensorPlans> plans = TileShards(entries, "ck.h5");
  ASSERT_TRUE(plans.ok()) << plans.status();
  ASSERT_EQ(plans->size(), 2u);
  const TensorPlan& embed = plans->at("params/embed");
  ASSERT_EQ(embed.writers.size(), 3u);
  EXPECT_EQ(embed.writers[0].offset, 0);
  EXPECT_EQ(embed.writers[1].offset, 5);
  EXPECT_EQ(embed.writers[2].offset, 9);
  EXPECT_EQ(embed.rounds, 2);
  const TensorPlan& norm = plans->at("params/norm");
  ASSERT_EQ(norm.writers.size(), 1u);
  EXPECT_EQ(norm.writers[0].rank, 0);
  EXPECT_EQ(norm.rounds, 1);
}

TEST(ShardTilingTest, EveryBadCoverIsNamed) {
  const Shape full = {10, 4};
  const std::string t = "checkpoint ck.h5: tensor params/w: ";
  EXPECT_EQ(Verdict({Slice("params/w", full, 0, 0, 4, 0), Slice("params/w", full, 0, 5, 5, 1)}),
            t + "not covered: slices leave a gap at 4 along dim 0 (rank 1)");
  EXPECT_EQ(Verdict({Slice("params/w", full, 0, 0, 6, 0), Slice("params/w", full, 0, 5, 5, 1)}),
            t + "slices overlap at 5 along dim 0 (rank 1)");
  EXPECT_EQ(Verdict({Slice("params/w", full, 0, 0, 6, 0), Slice("params/w", full, 0, 6, 3, 1)}),
            t + "not covered: slices cover 9 of 10 along dim 0");
  EXPECT_EQ(Verdict({Whole("params/w", full, 0, false), Whole("params/w", full, 1, false)}),
            t + "not covered: no rank writes it (2 replica(s) with write = false, e.g. rank 0)");
  EXPECT_EQ(Verdict({Whole("params/w", full, 0), Slice("params/w", full, 0, 0, 10, 1)}),
            t + "written more than once (overlap): ranks 0 and 1 both write it whole or in part");
  EXPECT_EQ(Verdict({Slice("params/w", full, 0, 0, 10, 0), Slice("params/w", full, 1, 0, 4, 1)}),
            t + "ranks 0 and 1 write slices along different dims (0 and 1)");
  ShardEntry f64 = Whole("params/w", full, 1);
  f64.dtype = DType::kF64;
  EXPECT_EQ(Verdict({Whole("params/w", full, 0), f64}),
            t + "ranks 0 and 1 disagree on its shape or dtype ([10, 4] f32 vs [10, 4] f64)");
  EXPECT_EQ(Verdict({Slice("params/w", full, 0, 8, 4, 0)}),
            t + "rank 0's slice [4, 4] at offset 8 along dim 0 does not fit [10, 4]");
  EXPECT_EQ(Verdict({Whole("params//w", full, 0)}),
            "checkpoint ck.h5: tensor params//w: empty, '.' or '..' component in the tensor name");
}

TEST(ShardTilingTest, EmptyAndScalarTensorsTile) {
  EXPECT_EQ(Verdict({Whole("state/scalar", {}, 0)}), "ok");
  // A 0 x 4 tensor split along dim 1 with one rank holding an empty slice.
  EXPECT_EQ(Verdict({Slice("params/empty", {0, 4}, 1, 0, 0, 0), Slice("params/empty", {0, 4}, 1, 0, 4, 1)}), "ok");
}

TEST(ShardTilingTest, SliceProblemAndBlock) {
  EXPECT_EQ(SliceProblem({8, 3}, {2, 3}, 0, 6), "");
  EXPECT_EQ(SliceProblem({8, 3}, {2, 3}, 0, 7), "slice [2, 3] at offset 7 along dim 0 does not fit [8, 3]");
  EXPECT_EQ(SliceProblem({8, 3}, {8, 2}, 0, 0), "slice [8, 2] at offset 0 along dim 0 does not fit [8, 3]");
  EXPECT_EQ(SliceProblem({8, 3}, {8, 3}, 2, 0), "split along dim 2 of a 2-dim tensor");
  Shape start, count;
  SliceBlock({8, 3, 5}, {8, 2, 5}, 1, 1, &start, &count);
  EXPECT_EQ(start, (Shape{0, 1, 0}));
  EXPECT_EQ(count, (Shape{8, 2, 5}));
}

}  // namespace
}  // namespace baton
