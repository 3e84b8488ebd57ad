// The generation loop end to end on a small random model: greedy tokens
// equal a plain no-cache greedy loop over Model::Logits (f64); a sampled
// request gets the same tokens alone and in a crowded batch whose cache is
// so small that sequences are preempted and recomputed; stop strings cut
// the text; bad requests are refused with their reason.
#include "runtime/batch_generator.h"

#include <algorithm>
#include <map>

#include "gtest/gtest.h"
#include "runtime/tokenizer.h"

namespace baton {
namespace {

ModelConfig ByteConfig() {
  ModelConfig c;
  c.layers = 2;
  c.dim = 32;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 64;
  c.vocab_size = ByteTokenizer::kVocabSize;
  c.init_std = 0.3f;  // peaked distributions: greedy ties are unlikely
  return c;
}

Model MakeModel(DType dtype) {
  absl::StatusOr<Model> m = Model::Create(ByteConfig(), dtype);
  BATON_CHECK(m.ok());
  m->Init(3);
  return std::move(*m);
}

GenerationRequest Request(int64_t handle, const std::string& prompt, int64_t max_new, double temperature,
                          uint64_t seed) {
  GenerationRequest r;
  r.handle = handle;
  r.prompt = ByteTokenizer().Encode(prompt);
  r.max_new_tokens = max_new;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.stop_at_eos = false;
  return r;
}

// Runs every request to the end; results by handle.
std::map<int64_t, GenerationResult> RunAll(BatchGenerator& g, std::vector<GenerationRequest> requests) {
  for (GenerationRequest& r : requests) EXPECT_TRUE(g.Add(std::move(r)).ok());
  std::map<int64_t, GenerationResult> out;
  while (!g.idle()) {
    absl::StatusOr<std::vector<GenerationResult>> done = g.Step();
    EXPECT_TRUE(done.ok()) << done.status();
    if (!done.ok()) break;
    for (GenerationResult& r : *done) out[r.handle] = std::move(r);
  }
  return out;
}

TEST(BatchGenerator, GreedyEqualsANoCacheLoop) {
  Model m = MakeModel(DType::kF64);
  ByteTokenizer tok;
  const std::vector<int32_t> prompt = tok.Encode("Hello, baton");
  std::vector<int32_t> seq = prompt;
  for (int i = 0; i < 12; ++i) {  // the reference: whole forward per token
    Tensor t = Tensor::Empty({1, static_cast<int64_t>(seq.size())}, DType::kI32);
    std::copy(seq.begin(), seq.end(), t.data<int32_t>());
    const Tensor logits = m.Logits(t);
    const int64_t V = logits.dim(1);
    const double* last = logits.data<double>() + (logits.dim(0) - 1) * V;
    seq.push_back(static_cast<int32_t>(std::max_element(last, last + V) - last));
  }
  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(m.config(), DType::kF64, 4), 8);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok());
  BatchGenerator g(*dm, *cache, &tok, {}, 1024);
  auto out = RunAll(g, {Request(1, "Hello, baton", 12, 0.0, 0)});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[1].tokens, std::vector<int32_t>(seq.begin() + prompt.size(), seq.end()));
  EXPECT_STREQ(out[1].finish_reason, "length");
  EXPECT_EQ(out[1].prompt_tokens, static_cast<int64_t>(prompt.size()));
  EXPECT_GE(out[1].latency_s, out[1].ttft_s);
}

TEST(BatchGenerator, SampledTokensDoNotDependOnBatchMatesOrPreemption) {
  Model m = MakeModel(DType::kF32);
  ByteTokenizer tok;
  const KvCacheShape shape = KvCacheShape::For(m.config(), DType::kF32, 4);
  GenerationRequest mine = Request(0, "The same prompt", 24, 0.8, 77);
  mine.sampling.top_p = 0.9;
  std::vector<int32_t> alone_tokens;
  {
    absl::StatusOr<KvCache> cache = KvCache::Create(shape, 64);
    ASSERT_TRUE(cache.ok());
    absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
    ASSERT_TRUE(dm.ok());
    BatchGenerator g(*dm, *cache, &tok, {}, 1024);
    alone_tokens = RunAll(g, {mine})[0].tokens;
  }
  ASSERT_EQ(alone_tokens.size(), 24u);
  // Crowded: 7 others of other lengths and parameters, a cache of 40
  // tokens for ~8 sequences growing to ~40 each: preemptions are certain.
  absl::StatusOr<KvCache> cache = KvCache::Create(shape, 10);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok());
  BatchGenerator g(*dm, *cache, &tok, {.max_batch = 8, .max_prefill_tokens = 64}, 1024);
  std::vector<GenerationRequest> crowd;
  for (int i = 1; i <= 7; ++i) {
    crowd.push_back(Request(i, std::string(static_cast<size_t>(3 + 2 * i), static_cast<char>('a' + i)), 10 + i,
                            0.5 + 0.1 * i, 1000 + i));
    if (i == 4) crowd.push_back(mine);  // in the middle of the queue
  }
  auto out = RunAll(g, crowd);
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out[0].tokens, alone_tokens);
  EXPECT_GT(g.scheduler_stats().preemptions, 0);
  EXPECT_GT(g.scheduler_stats().refills, 0);
  EXPECT_EQ(g.stats().generated_tokens, 24 + (11 + 12 + 13 + 14 + 15 + 16 + 17));
}

TEST(BatchGenerator, StopStringsCutTheText) {
  Model m = MakeModel(DType::kF64);
  ByteTokenizer tok;
  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(m.config(), DType::kF64, 4), 16);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok());
  BatchGenerator g(*dm, *cache, &tok, {}, 1024);
  const std::string full = RunAll(g, {Request(1, "abc", 16, 0.0, 0)})[1].text;
  ASSERT_GE(full.size(), 8u);
  GenerationRequest r = Request(2, "abc", 16, 0.0, 0);
  r.stop = {"zzzz-not-there", full.substr(5, 2)};
  const GenerationResult cut = RunAll(g, {r})[2];
  EXPECT_STREQ(cut.finish_reason, "stop");
  EXPECT_EQ(cut.text, full.substr(0, full.find(full.substr(5, 2))));
  EXPECT_LT(cut.tokens.size(), 16u);
}

TEST(BatchGenerator, RefusesBadRequestsWithTheReason) {
  Model m = MakeModel(DType::kF32);
  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(m.config(), DType::kF32, 4), 4);
  ASSERT_TRUE(cache.ok());
  absl::StatusOr<DecodeModel> dm = DecodeModel::Create(m, *cache);
  ASSERT_TRUE(dm.ok());
  BatchGenerator g(*dm, *cache, nullptr, {}, 32);
  auto message = [&](GenerationRequest r) { return std::string(g.Add(std::move(r)).message()); };
  EXPECT_NE(message(Request(1, std::string(40, 'x'), 4, 0, 0)).find("context is 32"), std::string::npos);
  EXPECT_NE(message(Request(1, std::string(20, 'x'), 4, 0, 0)).find("KV cache holds 16"), std::string::npos);
  GenerationRequest bad = Request(1, "ab", 4, 0, 0);
  bad.prompt[1] = 9999;
  EXPECT_NE(message(bad).find("token 9999 at prompt position 1"), std::string::npos);
  bad = Request(1, "ab", 0, 0, 0);
  EXPECT_NE(message(bad).find("max_new_tokens=0"), std::string::npos);
  EXPECT_TRUE(g.idle());
  // Growth is capped by the context (32) and the cache (16 tokens), the tighter one here.
  auto out = RunAll(g, {Request(5, std::string(10, 'y'), 100, 0, 0)});
  EXPECT_EQ(out[5].tokens.size(), 6u);
  EXPECT_STREQ(out[5].finish_reason, "length");
}

}  // namespace
}  // namespace baton
