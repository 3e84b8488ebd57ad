// The host side of the decode step's CUDA graphs (runtime/decode_graph.h):
// buckets, which batches fit, and the padded integer layout a graph reads.
// A wrong offset or padding value here would make a replayed graph attend
// to another sequence's blocks or write a padding row's K/V into the cache.
#include "runtime/decode_graph.h"

#include <gtest/gtest.h>

#include <vector>

namespace baton {
namespace {

TEST(DecodeGraph, BucketsArePowersOfTwo) {
  EXPECT_EQ(DecodeGraphBucket(1), 1);
  EXPECT_EQ(DecodeGraphBucket(2), 2);
  EXPECT_EQ(DecodeGraphBucket(3), 4);
  EXPECT_EQ(DecodeGraphBucket(64), 64);
  EXPECT_EQ(DecodeGraphBucket(65), 128);
  EXPECT_EQ(DecodeGraphBucket(257), 512);
}

DecodeBatch ThreeSequences() {
  DecodeBatch b;
  b.AddSequence({5, 6, 7}, {11}, 40, true);   // decode at position 40 (block 2)
  b.AddSequence({9}, {12}, 3, true);
  b.AddSequence({1, 2}, {13, 14}, 16, true);  // two prefill rows, the last's logits
  b.Finish();
  return b;
}

TEST(DecodeGraph, LayoutPadsRowsAndTableWidth) {
  const DecodeBatch b = ThreeSequences();
  const DecodeGraphLayout l = DecodeGraphLayoutFor(b, 512);
  EXPECT_EQ(l.rows, 4);   // 4 rows
  EXPECT_EQ(l.width, 4);  // 3 blocks
  EXPECT_EQ(l.size(), 4 + 4 * 4 + 4 + 4 + 4);
  EXPECT_EQ(DecodeGraphLayoutFor(b, 3).rows, 0) << "4 rows do not fit a cap of 3";
  DecodeBatch big;
  big.AddSequence({0}, std::vector<int32_t>(9, 1), 0, true);
  big.Finish();
  EXPECT_EQ(DecodeGraphLayoutFor(big, 8).rows, 0);
  EXPECT_EQ(DecodeGraphLayoutFor(big, 16).rows, 16);
}

TEST(DecodeGraph, PackedInputsPadWithHarmlessRows) {
  const DecodeBatch b = ThreeSequences();
  const DecodeGraphLayout l{8, 4};  // a bigger bucket than needed: 4 padding rows
  const std::vector<int32_t> p = PackDecodeGraphInputs(b, l);
  ASSERT_EQ(static_cast<int64_t>(p.size()), l.size());
  const std::vector<int32_t> tokens(p.begin(), p.begin() + 8);
  EXPECT_EQ(tokens, (std::vector<int32_t>{11, 12, 13, 14, 0, 0, 0, 0}));
  const std::vector<int32_t> tables(p.begin() + l.tables(), p.begin() + l.row_seq());
  std::vector<int32_t> want(8 * 4, -1);
  want[0] = 5, want[1] = 6, want[2] = 7, want[4] = 9, want[8] = 1, want[9] = 2;
  EXPECT_EQ(tables, want) << "sequence s at row s of width 4, -1 elsewhere";
  const std::vector<int32_t> seq(p.begin() + l.row_seq(), p.begin() + l.row_pos());
  EXPECT_EQ(seq, (std::vector<int32_t>{0, 1, 2, 2, 0, 0, 0, 0}));
  const std::vector<int32_t> pos(p.begin() + l.row_pos(), p.begin() + l.logit_rows());
  EXPECT_EQ(pos, (std::vector<int32_t>{40, 3, 16, 17, -1, -1, -1, -1})) << "padding rows at -1: no KV write";
  const std::vector<int32_t> logit(p.begin() + l.logit_rows(), p.end());
  EXPECT_EQ(logit, (std::vector<int32_t>{0, 1, 3, 0, 0, 0, 0, 0}));
}

}  // namespace
}  // namespace baton
