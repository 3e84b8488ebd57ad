// BpeTokenizer and the pre-tokenizer regexes against ids that HF
// `tokenizers` produced (tests/data/bpe_*.json, written once by
// scripts/tokenizer_parity.py --make-fixtures), plus round trips, special
// tokens and the errors for tokenizer.json files we must refuse.
#include "runtime/bpe_tokenizer.h"

#include <fstream>
#include <random>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/pretokenizer.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string DataPath(const std::string& name) { return std::string(BATON_SOURCE_DIR) + "/tests/data/" + name; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<BpeTokenizer> Load(const std::string& name) {
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromFile(DataPath(name));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

std::vector<std::string> Split(SplitRegex r, std::string_view text) {
  std::vector<std::string_view> pieces;
  SplitPieces(r, text, &pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

// A tokenizer.json with the given model vocab/merges/pre_tokenizer.
std::string MiniJson(const std::string& pre_tokenizer, bool ignore_merges = false) {
  nlohmann::json vocab = nlohmann::json::object();
  const auto& alphabet = ByteLevelAlphabet();
  for (int b = 0; b < 256; ++b) vocab[alphabet[b]] = b;
  vocab["ab"] = 256;
  vocab["bc"] = 257;
  vocab["abc"] = 258;
  vocab["cab"] = 261;  // in the vocab, but no merge builds it
  nlohmann::json j = {
      {"added_tokens", nlohmann::json::array({{{"id", 259}, {"content", "<s>"}, {"special", true}},
                                              {{"id", 260}, {"content", "</s>"}, {"special", true}}})},
      {"pre_tokenizer", nlohmann::json::parse(pre_tokenizer)},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", {"b c", "a b", "a bc"}}}}};
  return j.dump();
}
constexpr char kByteLevel[] = R"({"type": "ByteLevel", "add_prefix_space": false})";

// ---- pre-tokenizer

TEST(PreTokenizerTest, Gpt2SplitsLikeTheRegex) {
  EXPECT_THAT(Split(SplitRegex::kGpt2, "Hello world's  x\n\nfoo 123 ?!"),
              ElementsAre("Hello", " world", "'s", " ", " x", "\n", "\n", "foo", " 123", " ?!"));
  EXPECT_THAT(Split(SplitRegex::kGpt2, "I'M  "), ElementsAre("I", "'", "M", "  "));
}

TEST(PreTokenizerTest, Llama3AndQwen2GroupDigitsDifferently) {
  EXPECT_THAT(Split(SplitRegex::kLlama3, "12345 I'M\tok\r\n\r\n x"),
              ElementsAre("123", "45", " I", "'M", "\tok", "\r\n\r\n", " x"));
  EXPECT_THAT(Split(SplitRegex::kQwen2, "123"), ElementsAre("1", "2", "3"));
  // Unicode letters and numbers come from ICU: Cyrillic is \p{L}, Arabic-Indic digits \p{N}.
  EXPECT_THAT(Split(SplitRegex::kLlama3, "мир ٣٤٥٦"), ElementsAre("мир", " ", "٣٤٥", "٦"));
}

TEST(PreTokenizerTest, PiecesCoverInvalidUtf8) {
  const std::string bad = "a\xff\xfe b\xc3";
  std::string joined;
  for (const std::string& p : Split(SplitRegex::kGpt2, bad)) joined += p;
  EXPECT_EQ(joined, bad);
}

TEST(PreTokenizerTest, UnknownPatternIsAnError) {
  EXPECT_EQ(*SplitRegexFromPattern(SplitRegexPattern(SplitRegex::kQwen2)), SplitRegex::kQwen2);
  absl::StatusOr<SplitRegex> r = SplitRegexFromPattern(R"(\p{N}{1,3})");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("unsupported pre-tokenizer regex \"\\p{N}{1,3}\""));
}

TEST(PreTokenizerTest, ByteLevelAlphabet) {
  EXPECT_EQ(ByteLevelAlphabet()[' '], "Ġ");
  EXPECT_EQ(ByteLevelAlphabet()['\n'], "Ċ");
  EXPECT_EQ(ByteLevelAlphabet()['a'], "a");
  std::string out;
  EXPECT_TRUE(ByteLevelDecode("ĠhiĊ", &out));
  EXPECT_EQ(out, " hi\n");
  EXPECT_FALSE(ByteLevelDecode("日", &out));  // not a byte symbol
}

// ---- golden ids from HF

TEST(BpeTokenizerTest, MatchesHfGoldenIds) {
  const nlohmann::json golden = nlohmann::json::parse(ReadText(DataPath("bpe_golden.json")));
  ASSERT_EQ(golden.size(), 2u);
  for (const auto& [file, cases] : golden.items()) {
    std::unique_ptr<BpeTokenizer> t = Load(file);
    ASSERT_NE(t, nullptr);
    ASSERT_GE(cases.size(), 7u);
    for (const auto& c : cases) {
      EXPECT_EQ(t->Encode(c["text"].get<std::string>()), c["ids"].get<std::vector<int32_t>>())
          << file << ": " << c["text"];
    }
  }
}

TEST(BpeTokenizerTest, ReadsVocabSizeAndBosEos) {
  std::unique_ptr<BpeTokenizer> gpt2 = Load("bpe_gpt2.json");  // no post_processor: by name
  std::unique_ptr<BpeTokenizer> llama3 = Load("bpe_llama3.json");  // BOS from TemplateProcessing
  ASSERT_NE(gpt2, nullptr);
  ASSERT_NE(llama3, nullptr);
  for (const BpeTokenizer* t : {gpt2.get(), llama3.get()}) {
    EXPECT_EQ(t->vocab_size(), 384);
    EXPECT_EQ(t->bos_id(), 382);
    EXPECT_EQ(t->eos_id(), 383);
    EXPECT_EQ(t->merge_count(), 384 - 2 - 256);
  }
  EXPECT_EQ(gpt2->TokenString(220), "Ġ");
  EXPECT_EQ(gpt2->TokenId("<|end_of_text|>"), 383);
}

TEST(BpeTokenizerTest, SpecialTokensAreCutOutBeforePreTokenizing) {
  std::unique_ptr<BpeTokenizer> t = Load("bpe_llama3.json");
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> expected = t->Encode("say");
  expected.push_back(383);
  for (int32_t id : t->Encode(" hi")) expected.push_back(id);
  EXPECT_EQ(t->Encode("say<|end_of_text|> hi"), expected);
  // Specials are dropped by Decode; an almost-special is plain text.
  EXPECT_EQ(*t->Decode(expected), "say hi");
  EXPECT_EQ(*t->Decode(t->Encode("<|end_of_text|")), "<|end_of_text|");
}

TEST(BpeTokenizerTest, RoundTripsRandomText) {
  std::unique_ptr<BpeTokenizer> t = Load("bpe_gpt2.json");
  ASSERT_NE(t, nullptr);
  std::mt19937 rng(7);
  const char32_t ranges[][2] = {{0x20, 0x7e}, {0x9, 0xd}, {0xa0, 0x24f}, {0x400, 0x4ff}, {0x4e00, 0x4fff}, {0x1f600, 0x1f64f}};
  for (int trial = 0; trial < 300; ++trial) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      const auto& r = ranges[rng() % 6];
      const char32_t cp = r[0] + rng() % (r[1] - r[0] + 1);
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else if (cp < 0x800) {
        s += {static_cast<char>(0xC0 | cp >> 6), static_cast<char>(0x80 | (cp & 0x3F))};
      } else if (cp < 0x10000) {
        s += {static_cast<char>(0xE0 | cp >> 12), static_cast<char>(0x80 | (cp >> 6 & 0x3F)),
              static_cast<char>(0x80 | (cp & 0x3F))};
      } else {
        s += {static_cast<char>(0xF0 | cp >> 18), static_cast<char>(0x80 | (cp >> 12 & 0x3F)),
              static_cast<char>(0x80 | (cp >> 6 & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
      }
    }
    if (trial % 3 == 0) s += static_cast<char>(0x80 + rng() % 128);  // and a stray byte
    absl::StatusOr<std::string> back = t->Decode(t->Encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
}

TEST(BpeTokenizerTest, MergesApplyByRankNotByPosition) {
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromJson(MiniJson(kByteLevel));
  ASSERT_TRUE(t.ok()) << t.status();
  // "b c" has rank 0, so abc = a + bc (rank 2), never ab + c.
  EXPECT_THAT((*t)->Encode("abc"), ElementsAre(258));
  EXPECT_THAT((*t)->Encode("abd"), ElementsAre(256, 'd'));
  EXPECT_EQ((*t)->bos_id(), 259);  // "<s>" by name
  EXPECT_EQ((*t)->eos_id(), 260);
  EXPECT_THAT((*t)->Encode("cab"), ElementsAre('c', 256));
  absl::StatusOr<std::string> bad = (*t)->Decode({1, 262});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("token id 262 at position 1"));
}

TEST(BpeTokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocab) {
  // Merges alone give c + ab for "cab"; ignore_merges looks the word up first.
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromJson(MiniJson(kByteLevel, true));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("cab"), ElementsAre(261));
  EXPECT_THAT((*t)->Encode("cab abc"), ElementsAre(261, ' ', 258));
}

TEST(BpeTokenizerTest, AddPrefixSpace) {
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t =
      BpeTokenizer::FromJson(MiniJson(R"({"type": "ByteLevel", "add_prefix_space": true})"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->Encode("ab"), ElementsAre(' ', 256));
  EXPECT_THAT((*t)->Encode(" ab"), ElementsAre(' ', 256));
}

// ---- errors

TEST(BpeTokenizerTest, RefusesWhatItCannotReproduce) {
  struct Case {
    std::string json, message;
  };
  const std::string split_unknown =
      R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"},
          "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "use_regex": false}]})";
  nlohmann::json no_model = nlohmann::json::parse(MiniJson(kByteLevel));
  no_model.erase("model");
  nlohmann::json bad_merge = nlohmann::json::parse(MiniJson(kByteLevel));
  bad_merge["model"]["merges"].push_back("x yz");  // merges[3]
  nlohmann::json wordpiece = nlohmann::json::parse(MiniJson(kByteLevel));
  wordpiece["model"]["type"] = "WordPiece";
  const Case cases[] = {
      {"{not json", "not valid JSON"},
      {no_model.dump(), "tokenizer.json: model: missing"},
      {wordpiece.dump(), "model.type: \"WordPiece\" is not supported"},
      {bad_merge.dump(), "model.merges[3]: \"yz\" is not in the vocab"},
      {MiniJson(split_unknown), "pre_tokenizer.pretokenizers[0].pattern: unsupported pre-tokenizer regex"},
      {MiniJson(R"({"type": "Whitespace"})"), "pre-tokenizer type \"Whitespace\" is not supported"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = BpeTokenizer::FromJson(c.json);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(t.status().message(), HasSubstr(c.message));
  }
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> missing = BpeTokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/tokenizer.json"));
}

TEST(BpeTokenizerTest, LoadTokenizerByName) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> byte = LoadTokenizer("byte");
  ASSERT_TRUE(byte.ok());
  EXPECT_EQ((*byte)->vocab_size(), ByteTokenizer::kVocabSize);
  absl::StatusOr<std::unique_ptr<Tokenizer>> bpe = LoadTokenizer(DataPath("bpe_llama3.json"));
  ASSERT_TRUE(bpe.ok()) << bpe.status();
  EXPECT_EQ((*bpe)->vocab_size(), 384);
}

}  // namespace
}  // namespace baton
