// Encoding and decoding for BpeTokenizer (loading is bpe_tokenizer_load.cc).
#include "runtime/bpe_tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {
namespace {

absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t n = static_cast<int32_t>(s.size());
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U8_NEXT(p, i, n, c);
    if (c < 0) return false;
  }
  return true;
}

// NFC as HF's NFC normalizer; invalid UTF-8 (which HF cannot even take) is
// left as it is.
std::string Nfc(std::string_view s) {
  bool ascii = true;
  for (char c : s) ascii &= static_cast<uint8_t>(c) < 0x80;
  if (ascii || !IsValidUtf8(s)) return std::string(s);
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  if (U_SUCCESS(err)) nfc->normalizeUTF8(0, icu::StringPiece(s.data(), s.size()), sink, nullptr, err);
  return U_SUCCESS(err) ? out : std::string(s);
}

// Rust's char::is_whitespace (= White_Space) at the end / start of `s`.
size_t TrailingWhitespace(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  int32_t i = static_cast<int32_t>(s.size());
  while (i > 0) {
    int32_t j = i;
    UChar32 c;
    U8_PREV(p, 0, j, c);
    if (c < 0 || !u_hasBinaryProperty(c, UCHAR_WHITE_SPACE)) break;
    i = j;
  }
  return s.size() - i;
}
size_t LeadingWhitespace(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t n = static_cast<int32_t>(s.size());
  int32_t i = 0;
  while (i < n) {
    int32_t j = i;
    UChar32 c;
    U8_NEXT(p, j, n, c);
    if (c < 0 || !u_hasBinaryProperty(c, UCHAR_WHITE_SPACE)) break;
    i = j;
  }
  return i;
}
bool IsAlnumAt(std::string_view s, bool at_end) {
  if (s.empty()) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  int32_t i = at_end ? static_cast<int32_t>(s.size()) : 0;
  UChar32 c;
  if (at_end) {
    U8_PREV(p, 0, i, c);
  } else {
    U8_NEXT(p, i, static_cast<int32_t>(s.size()), c);
  }
  return c >= 0 && (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || (U_GET_GC_MASK(c) & U_GC_N_MASK));
}

}  // namespace

std::optional<int32_t> BpeTokenizer::TokenId(std::string_view token) const {
  for (const AddedToken& a : added_) {
    if (a.content == token) return a.id;
  }
  if (auto it = token_to_id_.find(Av(token)); it != token_to_id_.end()) return it->second;
  return std::nullopt;
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  size_t pos = 0;     // start of the text not yet encoded
  size_t search = 0;  // where the next added-token search starts
  while (!added_.empty() && search < text.size()) {
    // Leftmost, then longest, added token (HF: aho-corasick LeftmostLongest).
    const AddedToken* hit = nullptr;
    size_t at = search;
    for (; at < text.size() && hit == nullptr; ++at) {
      for (int32_t k : added_by_first_byte_[static_cast<uint8_t>(text[at])]) {
        if (absl::StartsWith(Av(text.substr(at)), added_[k].content)) {
          hit = &added_[k];
          break;
        }
      }
    }
    if (hit == nullptr) break;
    size_t start = at - 1, stop = start + hit->content.size();
    search = stop;
    if (hit->single_word && (IsAlnumAt(text.substr(0, start), true) || IsAlnumAt(text.substr(stop), false))) {
      continue;
    }
    if (hit->lstrip) start -= TrailingWhitespace(text.substr(pos, start - pos));
    if (hit->rstrip) stop += LeadingWhitespace(text.substr(stop));
    EncodeSegment(text.substr(pos, start - pos), &ids);
    ids.push_back(hit->id);
    pos = search = stop;
  }
  EncodeSegment(text.substr(pos), &ids);
  return ids;
}

void BpeTokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  for (const std::string& p : PreTokenize(text)) EncodeWord(p, ids);
}

std::vector<std::string> BpeTokenizer::PreTokenize(std::string_view text) const {
  const std::string normalized = nfc_ ? Nfc(text) : std::string(text);
  std::vector<std::string> pieces = {normalized};
  std::vector<std::string_view> split;
  for (const PreStep& step : pre_steps_) {
    if (step.byte_level && step.add_prefix_space) {
      for (std::string& p : pieces) {
        if (p.empty() || p[0] != ' ') p.insert(0, " ");
      }
    }
    if (step.byte_level && !step.use_regex) continue;
    std::vector<std::string> next;
    for (const std::string& p : pieces) {
      split.clear();
      SplitPieces(step.byte_level ? SplitRegex::kGpt2 : step.regex, p, &split);
      for (std::string_view s : split) next.emplace_back(s);
    }
    pieces = std::move(next);
  }
  return pieces;
}

void BpeTokenizer::EncodeWord(std::string_view bytes, std::vector<int32_t>* ids) const {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (auto it = cache_.find(Av(bytes)); it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word = MergeWord(bytes);
  ids->insert(ids->end(), word.begin(), word.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(std::string(bytes), std::move(word));
}

// HF's BPE::merge_word + Word::merge_all: a min-heap of (rank, position)
// over adjacent pairs, stale entries skipped when popped.
std::vector<int32_t> BpeTokenizer::MergeWord(std::string_view bytes) const {
  if (ignore_merges_) {
    if (auto it = token_to_id_.find(ByteLevelEncode(bytes)); it != token_to_id_.end()) return {it->second};
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbour indices, -1 at the ends
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(bytes.size());
  bool last_unk = false;
  for (char c : bytes) {
    int32_t id = byte_id_[static_cast<uint8_t>(c)];
    if (id < 0) {
      if (!unk_id_ || (fuse_unk_ && last_unk)) continue;
      id = *unk_id_;
      last_unk = true;
    } else {
      last_unk = false;
    }
    const int32_t n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, -1, true});
    if (n > 0) sym[n - 1].next = n;
  }
  struct Entry {
    int32_t rank, pos, new_id;
    bool operator<(const Entry& o) const {  // min-heap on (rank, pos)
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
    auto it = merges_.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  std::priority_queue<Entry> queue;
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) {
    if (auto* m = lookup(sym[i].id, sym[i + 1].id)) queue.push({m->first, i, m->second});
  }
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    Symbol& s = sym[top.pos];
    if (!s.alive || s.next < 0) continue;
    Symbol& right = sym[s.next];
    const auto* m = lookup(s.id, right.id);
    if (m == nullptr || m->second != top.new_id) continue;  // expired entry
    s.id = top.new_id;
    right.alive = false;
    s.next = right.next;
    if (s.next >= 0) sym[s.next].prev = top.pos;
    if (s.prev >= 0) {
      if (auto* p = lookup(sym[s.prev].id, s.id)) queue.push({p->first, s.prev, p->second});
    }
    if (s.next >= 0) {
      if (auto* p = lookup(s.id, sym[s.next].id)) queue.push({p->first, top.pos, p->second});
    }
  }
  std::vector<int32_t> ids;
  for (const Symbol& s : sym) {
    if (s.alive) ids.push_back(s.id);
  }
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("BpeTokenizer: token id ", id, " at position ", i,
                                                     " is outside [0, ", vocab_size(), ")"));
    }
    if (is_special_[id]) continue;
    const std::string& token = id_to_token_[id];
    // HF's ByteLevel decoder keeps a token that is not byte-level as it is.
    const size_t mark = text.size();
    if (is_added_[id] || !ByteLevelDecode(token, &text)) {
      text.resize(mark);
      text += token;
    }
  }
  return text;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& spec) {
  if (spec.empty() || spec == "byte") return std::unique_ptr<Tokenizer>(new ByteTokenizer());
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> bpe, BpeTokenizer::FromFile(spec));
  return std::unique_ptr<Tokenizer>(std::move(bpe));
}

}  // namespace baton
