// Embedding: lookup of the local vocab shard (zeros outside it), backward
// against finite differences with repeated tokens, out-of-shard tokens
// contributing nothing, and thread-count invariance of the scatter-add.
#include <omp.h>

#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

Tensor Tokens(const std::vector<int32_t>& ids) {
  Tensor t = Tensor::Empty({static_cast<int64_t>(ids.size())}, DType::kI32);
  for (size_t i = 0; i < ids.size(); ++i) t.data<int32_t>()[i] = ids[i];
  return t;
}

TEST(Embedding, LooksUpLocalShardAndZerosTheRest) {
  std::mt19937_64 rng(1);
  const int64_t v_local = 5, c = 7, vocab_start = 10;  // this rank holds ids 10..14
  Tensor table = testing::RandomTensor({v_local, c}, DType::kF32, rng);
  const Tensor tokens = Tokens({10, 14, 3, 12, 15, 12});
  Tensor out = testing::RandomTensor({6, c}, DType::kF32, rng);  // stale values must vanish
  BATON_EXPECT_OK(ops::Embedding(tokens, table, vocab_start, out));
  const int64_t expect_row[] = {0, 4, -1, 2, -1, 2};
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t j = 0; j < c; ++j) {
      const float want = expect_row[r] < 0 ? 0.0f : table.data<float>()[expect_row[r] * c + j];
      EXPECT_EQ(out.data<float>()[r * c + j], want) << "row " << r << " col " << j;
    }
}

TEST(Embedding, BackwardMatchesFiniteDifferencesAndAccumulates) {
  std::mt19937_64 rng(2);
  const int64_t v_local = 6, c = 5, vocab_start = 3;
  const Tensor tokens = Tokens({3, 8, 5, 5, 1, 9, 3, 4, 5});  // 1 and 9 are outside the shard
  Tensor table = testing::RandomTensor({v_local, c}, DType::kF64, rng);
  Tensor r = testing::RandomTensor({9, c}, DType::kF64, rng);
  Tensor out = Tensor::Empty({9, c}, DType::kF64);
  auto loss = [&] {
    BATON_EXPECT_OK(ops::Embedding(tokens, table, vocab_start, out));
    return testing::Dot(out, r);
  };
  Tensor dtable = testing::RandomTensor({v_local, c}, DType::kF64, rng);
  const std::vector<double> before = testing::ToDoubles(dtable);
  BATON_EXPECT_OK(ops::EmbeddingBackward(r, tokens, vocab_start, dtable));
  std::vector<double> added = testing::ToDoubles(dtable);
  for (size_t i = 0; i < added.size(); ++i) added[i] -= before[i];
  EXPECT_TRUE(AllClose(added, testing::NumericGradient(table, loss), kGradTol, "dtable"));
  // Row 4 (id 7) is never used: its gradient is untouched, exactly.
  for (int64_t j = 0; j < c; ++j) EXPECT_EQ(added[4 * c + j], 0.0);
}

TEST(Embedding, BackwardSameBitsForAnyThreadCount) {
  std::mt19937_64 rng(3);
  const int64_t v = 37, c = 200, n = 500;
  std::vector<int32_t> ids(n);
  std::uniform_int_distribution<int32_t> pick(0, v - 1);
  for (auto& id : ids) id = pick(rng);
  const Tensor tokens = Tokens(ids);
  const Tensor dout = testing::RandomTensor({n, c}, DType::kF32, rng);
  Tensor d1 = Tensor::Zeros({v, c}, DType::kF32), d3 = Tensor::Zeros({v, c}, DType::kF32);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  BATON_EXPECT_OK(ops::EmbeddingBackward(dout, tokens, 0, d1));
  omp_set_num_threads(3);
  BATON_EXPECT_OK(ops::EmbeddingBackward(dout, tokens, 0, d3));
  omp_set_num_threads(saved);
  EXPECT_TRUE(testing::BitwiseEqual(d1, d3));
}

}  // namespace
}  // namespace baton
