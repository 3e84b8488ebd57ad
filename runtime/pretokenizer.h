// Pre-tokenization for byte-level BPE: the regex splits of GPT-2, Llama-3
// and Qwen2 and the GPT-2 byte-to-unicode alphabet. HF `tokenizers` runs
// these regexes with Oniguruma; rather than carry a regex engine we
// recognise the three pattern strings exactly and run a hand-written
// matcher per pattern that makes the same leftmost-first, greedy choices
// (Unicode categories \p{L}, \p{N} and White_Space from ICU). Any other
// pattern is an InvalidArgument naming it. Used by bpe_tokenizer.cc and
// bpe_trainer.cc. Invariant: the pieces of SplitPieces concatenate back to
// the input, byte for byte, for any bytes (invalid UTF-8 is one "other"
// character per bad byte).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace baton {

enum class SplitRegex : uint8_t {
  kGpt2,    // 's|'t|... ?\p{L}+| ?\p{N}+|...  (ByteLevel use_regex=true)
  kLlama3,  // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|...
  kQwen2,   // as Llama-3 with single digits: \p{N}
};

// The exact pattern string HF writes for `regex`.
std::string_view SplitRegexPattern(SplitRegex regex);

// The SplitRegex whose pattern is exactly `pattern`; InvalidArgument quoting
// the pattern (and listing the supported ones) otherwise.
absl::StatusOr<SplitRegex> SplitRegexFromPattern(std::string_view pattern);

// Appends to `pieces` the matches of `regex` in `text` and the gaps between
// them (HF Split behavior "Isolated"), in order, none empty.
void SplitPieces(SplitRegex regex, std::string_view text, std::vector<std::string_view>* pieces);

// GPT-2's bytes_to_unicode: byte b -> the UTF-8 of the printable character
// that stands for it in vocab files ('Ġ' for ' ', 'Ċ' for '\n').
const std::array<std::string, 256>& ByteLevelAlphabet();

// Code point of ByteLevelAlphabet()[b].
char32_t ByteLevelCodepoint(uint8_t b);

// `bytes` mapped through ByteLevelAlphabet().
std::string ByteLevelEncode(std::string_view bytes);

// The inverse: a byte-level string back to bytes. Returns false (leaving
// `out` partly written) when `text` holds a character outside the alphabet.
bool ByteLevelDecode(std::string_view text, std::string* out);

}  // namespace baton
