// ByteTokenizer: ids are bytes (0..255), BOS 256, EOS 257; Decode inverts
// Encode for every byte and rejects ids outside the vocabulary.
#include "runtime/tokenizer.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ByteTokenizerTest, Constants) {
  ByteTokenizer tok;
  const Tokenizer& t = tok;  // used through the interface
  EXPECT_EQ(t.vocab_size(), 258);
  EXPECT_EQ(t.bos_id(), 256);
  EXPECT_EQ(t.eos_id(), 257);
}

TEST(ByteTokenizerTest, EncodesBytesAsUnsignedIds) {
  ByteTokenizer tok;
  EXPECT_THAT(tok.Encode("Hi\n"), ElementsAre(72, 105, 10));
  EXPECT_THAT(tok.Encode(std::string("\x00\x80\xff", 3)), ElementsAre(0, 128, 255));
  EXPECT_TRUE(tok.Encode("").empty());
  EXPECT_THAT(tok.Encode("\xc3\xa9"), ElementsAre(0xc3, 0xa9));  // UTF-8 'é' is two tokens
}

TEST(ByteTokenizerTest, DecodeInvertsEncodeForEveryByte) {
  ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  auto text = tok.Decode(tok.Encode(all));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, all);
}

TEST(ByteTokenizerTest, DecodeDropsSpecialTokens) {
  ByteTokenizer tok;
  auto text = tok.Decode(std::vector<int32_t>{256, 'o', 'k', 257, 256, '!'});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "ok!");
}

TEST(ByteTokenizerTest, DecodeRejectsIdsOutsideVocab) {
  ByteTokenizer tok;
  auto text = tok.Decode(std::vector<int32_t>{'a', 258});
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()),
              HasSubstr("token id 258 at position 1 is outside [0, 258)"));
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{-1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton
