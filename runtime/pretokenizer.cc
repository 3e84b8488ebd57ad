// Hand-written matchers for the three known pre-tokenizer regexes. Each
// Match*() returns the length, in characters, of the match that a
// backtracking engine (Oniguruma, as HF uses) finds at position i: the
// first alternative that matches, each quantifier greedy. Every character
// is \s, \p{L}, \p{N} or "other", and each class starts some alternative,
// so a match always starts where the previous one ended (no gaps).
#include "runtime/pretokenizer.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {
namespace {

constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kCrLf = 8 };

struct Char {
  int32_t cp;       // code point, or -1 for an invalid UTF-8 sequence
  uint32_t offset;  // byte offset in the text
  uint8_t cls;      // kLetter | kNumber | kSpace | kCrLf bits; 0 = other
};

uint8_t Classify(int32_t cp) {
  if (cp < 0) return 0;
  if (cp < 0x80) {
    if (cp == '\r' || cp == '\n') return kSpace | kCrLf;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kSpace;
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    return 0;
  }
  const uint32_t mask = U_GET_GC_MASK(cp);
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  if (u_hasBinaryProperty(cp, UCHAR_WHITE_SPACE)) return kSpace;
  return 0;
}

class Matcher {
 public:
  explicit Matcher(std::string_view text) : size_(text.size()) {
    const auto* s = reinterpret_cast<const uint8_t*>(text.data());
    const int32_t n = static_cast<int32_t>(text.size());
    chars_.reserve(text.size());
    int32_t i = 0;
    while (i < n) {
      const uint32_t offset = static_cast<uint32_t>(i);
      UChar32 cp;
      U8_NEXT(s, i, n, cp);
      chars_.push_back({cp, offset, Classify(cp)});
    }
  }

  size_t chars() const { return chars_.size(); }
  size_t Offset(size_t i) const { return i < chars_.size() ? chars_[i].offset : size_; }

  // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  size_t MatchGpt2(size_t i) const {
    if (size_t n = Contraction(i, /*ignore_case=*/false)) return n;
    for (uint8_t cls : {kLetter, kNumber}) {
      if (Cp(i) == ' ' && Is(i + 1, cls)) return 1 + Run(i + 1, cls);
      if (Is(i, cls)) return Run(i, cls);
    }
    if (Cp(i) == ' ' && IsOther(i + 1)) return 1 + RunOther(i + 1);
    if (IsOther(i)) return RunOther(i);
    return TrailingSpace(i);
  }

  // Llama-3 / Qwen2 (max_digits 3 / 1):
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  size_t MatchLlama3(size_t i, size_t max_digits) const {
    if (size_t n = Contraction(i, /*ignore_case=*/true)) return n;
    const uint8_t c = chars_[i].cls;
    if (!(c & (kCrLf | kLetter | kNumber)) && Is(i + 1, kLetter)) return 1 + Run(i + 1, kLetter);
    if (c & kLetter) return Run(i, kLetter);
    if (c & kNumber) return std::min(max_digits, Run(i, kNumber));
    if (Cp(i) == ' ' && IsOther(i + 1)) {
      const size_t k = i + 1 + RunOther(i + 1);
      return k - i + Run(k, kCrLf);
    }
    if (IsOther(i)) {
      const size_t k = i + RunOther(i);
      return k - i + Run(k, kCrLf);
    }
    // \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run.
    const size_t end = i + Run(i, kSpace);
    for (size_t p = end; p > i; --p) {
      if (chars_[p - 1].cls & kCrLf) return p - i;
    }
    return TrailingSpace(i);
  }

 private:
  int32_t Cp(size_t i) const { return i < chars_.size() ? chars_[i].cp : -2; }
  bool Is(size_t i, uint8_t cls) const { return i < chars_.size() && (chars_[i].cls & cls); }
  bool IsOther(size_t i) const {
    return i < chars_.size() && !(chars_[i].cls & (kLetter | kNumber | kSpace));
  }
  size_t Run(size_t i, uint8_t cls) const {
    size_t j = i;
    while (Is(j, cls)) ++j;
    return j - i;
  }
  size_t RunOther(size_t i) const {
    size_t j = i;
    while (IsOther(j)) ++j;
    return j - i;
  }

  // \s+(?!\S)|\s+ at a whitespace character: a run that ends the text is
  // taken whole; otherwise it leaves its last space to the next word.
  size_t TrailingSpace(size_t i) const {
    BATON_CHECK(Is(i, kSpace));
    const size_t n = Run(i, kSpace);
    if (i + n == chars_.size() || n == 1) return n;
    return n - 1;
  }

  // 's|'t|'re|'ve|'m|'ll|'d; with ignore_case, Oniguruma's case folding
  // also lets U+017F (long s) stand for s.
  size_t Contraction(size_t i, bool ignore_case) const {
    if (Cp(i) != '\'') return 0;
    auto at = [&](size_t k, char lower) {
      const int32_t cp = Cp(i + k);
      if (cp == lower) return true;
      if (!ignore_case) return false;
      return cp == lower - 'a' + 'A' || (lower == 's' && cp == 0x17F);
    };
    if (at(1, 's') || at(1, 't') || (at(1, 'r') && at(2, 'e')) || (at(1, 'v') && at(2, 'e')) ||
        at(1, 'm') || (at(1, 'l') && at(2, 'l')) || at(1, 'd')) {
      return (at(1, 'r') || at(1, 'v') || at(1, 'l')) ? 3 : 2;
    }
    return 0;
  }

  size_t size_;
  std::vector<Char> chars_;
};

const std::array<char32_t, 256>& ByteCodepoints() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

}  // namespace

std::string_view SplitRegexPattern(SplitRegex regex) {
  switch (regex) {
    case SplitRegex::kGpt2:
      return kGpt2Pattern;
    case SplitRegex::kLlama3:
      return kLlama3Pattern;
    case SplitRegex::kQwen2:
      return kQwen2Pattern;
  }
  return {};
}

absl::StatusOr<SplitRegex> SplitRegexFromPattern(std::string_view pattern) {
  for (SplitRegex r : {SplitRegex::kGpt2, SplitRegex::kLlama3, SplitRegex::kQwen2}) {
    if (pattern == SplitRegexPattern(r)) return r;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported pre-tokenizer regex \"", absl::string_view(pattern.data(), pattern.size()),
      "\" (supported: the GPT-2, Llama-3 and Qwen2 patterns, exactly as HF writes them)"));
}

void SplitPieces(SplitRegex regex, std::string_view text, std::vector<std::string_view>* pieces) {
  const Matcher m(text);
  size_t i = 0;
  while (i < m.chars()) {
    size_t n = 0;
    switch (regex) {
      case SplitRegex::kGpt2:
        n = m.MatchGpt2(i);
        break;
      case SplitRegex::kLlama3:
        n = m.MatchLlama3(i, 3);
        break;
      case SplitRegex::kQwen2:
        n = m.MatchLlama3(i, 1);
        break;
    }
    BATON_CHECK(n >= 1);
    const size_t begin = m.Offset(i);
    pieces->push_back(text.substr(begin, m.Offset(i + n) - begin));
    i += n;
  }
}

char32_t ByteLevelCodepoint(uint8_t b) { return ByteCodepoints()[b]; }

const std::array<std::string, 256>& ByteLevelAlphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    for (int b = 0; b < 256; ++b) {
      char buf[4];
      int32_t len = 0;
      U8_APPEND_UNSAFE(buf, len, ByteCodepoints()[b]);
      t[b].assign(buf, len);
    }
    return t;
  }();
  return table;
}

std::string ByteLevelEncode(std::string_view bytes) {
  const auto& alphabet = ByteLevelAlphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += alphabet[static_cast<uint8_t>(c)];
  return out;
}

bool ByteLevelDecode(std::string_view text, std::string* out) {
  static const std::array<int16_t, 512> inverse = [] {
    std::array<int16_t, 512> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[ByteCodepoints()[b]] = static_cast<int16_t>(b);
    return t;
  }();
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t n = static_cast<int32_t>(text.size());
  int32_t i = 0;
  while (i < n) {
    UChar32 cp;
    U8_NEXT(s, i, n, cp);
    if (cp < 0 || cp >= 512 || inverse[cp] < 0) return false;
    out->push_back(static_cast<char>(inverse[cp]));
  }
  return true;
}

}  // namespace baton
