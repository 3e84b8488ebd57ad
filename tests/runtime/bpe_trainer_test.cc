// BpeTrainer: a training run small enough to check by hand (and checked
// against HF's BpeTrainer, which gives the same merges), determinism, the
// vocab budget, and that what it writes loads back into BpeTokenizer.
#include "runtime/bpe_trainer.h"

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/bpe_tokenizer.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// "aaab aaab" has the words "aaab" and " aaab" ("Ġaaab"). Pair counts: aa 4,
// ab 2, Ġa 1. Merge aa; then ab and (aa, a) tie at 2 and ab wins as the
// smaller pair of ids ('a' = 64 < 'aa' = 256); then (aa, ab); then (Ġ, aaab).
TEST(BpeTrainerTest, HandCheckedMerges) {
  BpeTrainer trainer({.vocab_size = 300});
  trainer.AddDocument("aaab aaab");
  absl::StatusOr<BpeModel> model = trainer.Train();
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(model->merges, ElementsAre(Pair("a", "a"), Pair("a", "b"), Pair("aa", "ab"), Pair("Ġ", "aaab")));
  // The corpus runs out of pairs: 256 bytes + 4 merges + 2 specials.
  ASSERT_EQ(model->vocab.size(), 262u);
  EXPECT_EQ(model->vocab[64], "a");  // bytes are numbered by byte-level code point
  EXPECT_EQ(model->vocab[220], "Ġ");
  EXPECT_EQ(model->vocab[258], "aaab");
  EXPECT_EQ(model->vocab[261], "<|end_of_text|>");

  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromJson(BpeModelToJson(*model));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("aaab aaab"), ElementsAre(258, 259));
  EXPECT_THAT((*t)->Encode("aab"), ElementsAre(256, 65));  // aa then b: (a, b) cannot follow
  EXPECT_EQ((*t)->bos_id(), 260);
  EXPECT_EQ((*t)->eos_id(), 261);
}

TEST(BpeTrainerTest, StopsAtVocabSize) {
  BpeTrainer trainer({.vocab_size = 256 + 2 + 2});
  trainer.AddDocument("aaab aaab");
  absl::StatusOr<BpeModel> model = trainer.Train();
  ASSERT_TRUE(model.ok());
  EXPECT_THAT(model->merges, ElementsAre(Pair("a", "a"), Pair("a", "b")));
  EXPECT_EQ(model->vocab.size(), 260u);
}

TEST(BpeTrainerTest, MinFrequencyStopsEarly) {
  BpeTrainerConfig config{.vocab_size = 300};
  config.min_frequency = 2;
  BpeTrainer trainer(config);
  trainer.AddDocument("aaab aaab");
  absl::StatusOr<BpeModel> model = trainer.Train();
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->merges.size(), 3u);  // (Ġ, aaab) was seen once
}

TEST(BpeTrainerTest, DeterministicAndOrderFree) {
  const std::vector<std::string> docs = {
      "The quick brown fox jumps over the lazy dog.\n", "It's 2024; numbers 1234567 and ünïcödé!\n",
      "the the the fox fox dog\n\n  indented  text\n", "日本語のテキスト and more text, the end\n"};
  auto train = [&](bool reversed) {
    BpeTrainer trainer({.vocab_size = 330, .special_tokens = {"<s>", "</s>"}});
    std::vector<std::string> order = docs;
    if (reversed) std::reverse(order.begin(), order.end());
    for (const std::string& d : order) trainer.AddDocument(d);
    absl::StatusOr<BpeModel> m = trainer.Train();
    EXPECT_TRUE(m.ok());
    return BpeModelToJson(*m);
  };
  const std::string a = train(false);
  EXPECT_EQ(a, train(false));
  EXPECT_EQ(a, train(true));
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromJson(a);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->TokenString((*t)->bos_id()), "<s>");
  EXPECT_EQ((*t)->TokenString((*t)->eos_id()), "</s>");
  for (const std::string& d : docs) EXPECT_EQ(*(*t)->Decode((*t)->Encode(d)), d);
  // Training text encodes shorter than bytes: the merges are used.
  EXPECT_LT((*t)->Encode(docs[2]).size(), docs[2].size() / 2);
}

TEST(BpeTrainerTest, VocabTooSmallIsAnError) {
  BpeTrainer trainer({.vocab_size = 257});
  trainer.AddDocument("abc");
  absl::StatusOr<BpeModel> model = trainer.Train();
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("vocab_size: 257 cannot hold the 256 byte symbols and 2 special"));
}

}  // namespace
}  // namespace baton
