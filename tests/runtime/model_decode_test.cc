// The cached decode against the no-cache forward, in f64: the logits of
// every position, computed by prefill and then one token at a time through
// the paged KV cache (block size 4, so sequences cross many blocks, and
// blocks handed out out of order), equal Model::Logits over the whole
// sequence to relative 1e-10. Also after a preemption: the sequence's
// blocks freed, its tokens re-prefilled into other blocks, decode resumed.
// And a mixed batch (one sequence prefilling while another decodes) gives
// each the logits it gets alone.
#include "runtime/model_decode.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/rng.h"

namespace baton {
namespace {

ModelConfig SmallConfig(bool bias, bool tied) {
  ModelConfig c;
  c.layers = 2;
  c.dim = 32;
  c.heads = 4;
  c.kv_heads = 2;  // GQA: two query heads per kv head
  c.ffn_dim = 48;
  c.vocab_size = 53;
  c.qkv_bias = bias;
  c.tie_embeddings = tied;
  c.init_std = 0.2f;  // large weights: attention far from uniform, so a wrong key shows
  return c;
}

Model MakeModel(const ModelConfig& c) {
  absl::StatusOr<Model> m = Model::Create(c, DType::kF64);
  BATON_CHECK(m.ok());
  m->Init(7);
  for (Param& p : m->params()) {  // biases and norm weights are 0 and 1 after Init: make them count
    if (p.name.find(".b") != std::string::npos || p.name.find("norm") != std::string::npos) {
      FillNormal(p.value, 11, p.name, 0.3f);
      if (p.name.find("norm") != std::string::npos) {
        for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<double>()[i] += 1.0;
      }
    }
  }
  return std::move(*m);
}

std::vector<int32_t> Sequence(int64_t n, int vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + seed * 104729 + i * i * 31) % vocab);
  return t;
}

// (T, V) reference logits of one sequence without any cache.
Tensor Reference(Model& m, const std::vector<int32_t>& seq) {
  Tensor tokens = Tensor::Empty({1, static_cast<int64_t>(seq.size())}, DType::kI32);
  std::copy(seq.begin(), seq.end(), tokens.data<int32_t>());
  return m.Logits(tokens);
}

// Worst |a - b| / (1e-300 + max|ref row|) over a row; "" when under 1e-10.
std::string CompareRow(const double* got, const double* ref, int64_t V, const std::string& what) {
  double scale = 0, worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < V; ++i) scale = std::max(scale, std::abs(ref[i]));
  for (int64_t i = 0; i < V; ++i) {
    const double e = std::abs(got[i] - ref[i]) / scale;
    if (e > worst) worst = e, at = i;
  }
  if (worst <= 1e-10) return "";
  return absl::StrCat(what, ": logit ", at, " got ", got[at], " want ", ref[at], " (relative error ", worst, ")");
}

class CachedDecode : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(CachedDecode, EqualsNoCacheForwardAcrossBlocksAndPreemption) {
  const auto [bias, tied] = GetParam();
  const ModelConfig c = SmallConfig(bias, tied);
  Model m = MakeModel(c);
  const std::vector<int32_t> seq = Sequence(37, c.vocab_size, 1);
  const Tensor ref = Reference(m, seq);
  const int64_t V = c.vocab_size;

  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(c, DType::kF64, 4), 40);
  ASSERT_TRUE(cache.ok()) << cache.status();
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok()) << dm.status();
  // Scramble the free list: the sequence's blocks are not 0, 1, 2, ...
  std::vector<int32_t> hold, table;
  ASSERT_TRUE(cache->pool().Allocate(3, hold));
  ASSERT_TRUE(cache->pool().Allocate(2, table));
  std::vector<int32_t> hold2;
  ASSERT_TRUE(cache->pool().Allocate(1, hold2));
  cache->pool().Free(hold);

  auto ensure = [&](int64_t tokens) {
    const int64_t need = BlocksForTokens(tokens, 4) - static_cast<int64_t>(table.size());
    if (need > 0) {
      ASSERT_TRUE(cache->pool().Allocate(need, table));
    }
  };
  // Prefill 9 tokens (logits of every row), then decode one at a time.
  auto prefill = [&](int64_t n, bool all_rows) {
    ensure(n);
    DecodeBatch b;
    b.AddSequence(table, std::vector<int32_t>(seq.begin(), seq.begin() + n), 0, !all_rows);
    if (all_rows) {
      for (int32_t r = 0; r < n; ++r) b.logit_rows.push_back(r);
    }
    b.Finish();
    absl::StatusOr<Tensor> logits = dm->Forward(b);
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (int64_t r = 0; r < logits->dim(0); ++r) {
      const int64_t pos = all_rows ? r : n - 1;
      EXPECT_EQ(CompareRow(logits->data<double>() + r * V, ref.data<double>() + pos * V, V,
                           absl::StrCat("prefill position ", pos)), "");
    }
  };
  prefill(9, true);
  int64_t done = 9;
  auto decode_to = [&](int64_t end) {
    for (; done < end; ++done) {
      ensure(done + 1);
      DecodeBatch b;
      b.AddSequence(table, {seq[done]}, static_cast<int32_t>(done), true);
      b.Finish();
      absl::StatusOr<Tensor> logits = dm->Forward(b);
      ASSERT_TRUE(logits.ok()) << logits.status();
      ASSERT_EQ(logits->dim(0), 1);
      EXPECT_EQ(CompareRow(logits->data<double>(), ref.data<double>() + done * V, V,
                           absl::StrCat("decode position ", done)), "");
    }
  };
  decode_to(22);
  // Preemption: the blocks go back (and get scribbled on by another
  // sequence), the 22 tokens are recomputed in one prefill, decode resumes.
  cache->pool().Free(table);
  std::vector<int32_t> other;
  ASSERT_TRUE(cache->pool().Allocate(2, other));
  {
    DecodeBatch b;
    b.AddSequence(other, Sequence(8, c.vocab_size, 9), 0, true);
    b.Finish();
    ASSERT_TRUE(dm->Forward(b).ok());
  }
  prefill(22, false);
  done = 22;
  decode_to(37);
  EXPECT_GE(table.size(), 10u);
}

INSTANTIATE_TEST_SUITE_P(BiasTied, CachedDecode,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

// The checker can fail: one perturbed logit past 1e-10 is reported.
TEST(CachedDecode, CheckerSeesAPerturbation) {
  std::vector<double> ref = {1.0, -2.0, 3.0}, got = ref;
  EXPECT_EQ(CompareRow(got.data(), ref.data(), 3, "x"), "");
  got[1] += 3.0 * 2e-10;
  EXPECT_NE(CompareRow(got.data(), ref.data(), 3, "x"), "");
}

// One sequence prefilling while another decodes, in one call: each gets the
// logits it gets alone (rows are independent).
TEST(CachedDecode, MixedPrefillAndDecodeBatch) {
  const ModelConfig c = SmallConfig(true, false);
  Model m = MakeModel(c);
  const int64_t V = c.vocab_size;
  const std::vector<int32_t> a = Sequence(15, c.vocab_size, 2), b = Sequence(11, c.vocab_size, 3);
  const Tensor ref_a = Reference(m, a), ref_b = Reference(m, b);
  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(c, DType::kF64, 4), 16);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok());
  std::vector<int32_t> ta, tb;
  ASSERT_TRUE(cache->pool().Allocate(4, ta));
  ASSERT_TRUE(cache->pool().Allocate(3, tb));
  {  // a: prefill 14 tokens alone
    DecodeBatch batch;
    batch.AddSequence(ta, std::vector<int32_t>(a.begin(), a.end() - 1), 0, true);
    batch.Finish();
    ASSERT_TRUE(dm->Forward(batch).ok());
  }
  DecodeBatch batch;  // a decodes its 15th token while b prefills all 11
  batch.AddSequence(tb, b, 0, true);
  batch.AddSequence(ta, {a.back()}, 14, true);
  batch.Finish();
  absl::StatusOr<Tensor> logits = dm->Forward(batch);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(CompareRow(logits->data<double>(), ref_b.data<double>() + 10 * V, V, "b prefill"), "");
  EXPECT_EQ(CompareRow(logits->data<double>() + V, ref_a.data<double>() + 14 * V, V, "a decode"), "");
}

TEST(CachedDecode, RejectsARowWithoutABlock) {
  const ModelConfig c = SmallConfig(false, true);
  Model m = MakeModel(c);
  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(c, DType::kF64, 4), 4);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok());
  DecodeBatch batch;
  batch.AddSequence({0}, Sequence(5, c.vocab_size, 1), 0, true);  // 5 tokens, one block of 4
  batch.Finish();
  absl::StatusOr<Tensor> logits = dm->Forward(batch);
  EXPECT_EQ(logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(logits.status().message()).find("position 4 has no cache block"), std::string::npos);
}

TEST(KvCache, SizesFromABudgetAndKeepsTheFreeListExact) {
  ModelConfig c = SmallConfig(false, true);
  const KvCacheShape shape = KvCacheShape::For(c, DType::kF32, 16);
  EXPECT_EQ(shape.BytesPerBlock(), 2 * 2 * 16 * 2 * 8 * 4);  // K and V, layers, tokens, kv heads, head dim, f32
  EXPECT_EQ(KvBlocksForBytes(shape, shape.BytesPerBlock() * 7 + 5), 7);
  absl::StatusOr<KvCache> cache = KvCache::Create(shape, 7);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(cache->capacity_tokens(), 7 * 16);
  std::vector<int32_t> t;
  EXPECT_TRUE(cache->pool().Allocate(5, t));
  EXPECT_FALSE(cache->pool().Allocate(3, t));  // all or nothing
  EXPECT_EQ(t.size(), 5u);
  EXPECT_EQ(cache->pool().num_free(), 2);
  cache->pool().Free(t);
  EXPECT_EQ(cache->pool().num_free(), 7);
  EXPECT_EQ(KvCache::Create(shape, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton
