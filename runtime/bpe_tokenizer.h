// Byte-level BPE behind the Tokenizer interface, loaded from a Hugging Face
// `tokenizer.json` (GPT-2, Llama-3, Qwen2 and DeepSeek-R1-Distill style).
// Encode follows HF `tokenizers` step by step so that ids are identical:
// added tokens are cut out first (leftmost-longest, honouring lstrip and
// rstrip), the rest is normalized (none or NFC), pre-tokenized (ByteLevel
// and Split with a known regex, pretokenizer.h), mapped to the byte-level
// alphabet and merged by rank per word, lowest rank first and leftmost
// among equals, exactly as HF's Word::merge_all. Words are cached.
// Post-processors are not applied (callers add BOS/EOS); they are read only
// to find the BOS/EOS ids. Invariant: Decode(Encode(s)) == s for every byte
// string s that contains no added token.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "runtime/pretokenizer.h"
#include "runtime/tokenizer.h"

namespace baton {

class BpeTokenizer final : public Tokenizer {
 public:
  // Parses a tokenizer.json document. InvalidArgument naming the field for
  // anything HF would read differently from us (an unknown pre-tokenizer
  // regex, a model that is not BPE, dropout, a missing merge token...).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(std::string_view json);
  // FromJson of a file; errors are prefixed with the path.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromFile(const std::string& path);

  std::vector<int32_t> Encode(std::string_view text) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }

  // The vocab string of `id` (byte-level characters for model tokens, the
  // literal content for added tokens); empty for an unused id.
  const std::string& TokenString(int32_t id) const { return id_to_token_[id]; }
  std::optional<int32_t> TokenId(std::string_view token) const;
  // The pre-tokens (raw bytes, before the byte-level mapping) that Encode
  // merges, for text without added tokens: what HF's
  // pre_tokenizer.pre_tokenize_str returns, for parity checks.
  std::vector<std::string> PreTokenize(std::string_view text) const;
  int64_t merge_count() const { return static_cast<int64_t>(merges_.size()); }

 private:
  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool lstrip = false, rstrip = false, single_word = false, special = false;
  };
  struct PreStep {  // one pre-tokenizer of the pipeline, applied in order
    bool byte_level = false;        // ByteLevel (else Split)
    bool add_prefix_space = false;  // ByteLevel
    bool use_regex = true;          // ByteLevel: split with the GPT-2 regex
    SplitRegex regex = SplitRegex::kGpt2;
  };

  BpeTokenizer() = default;
  absl::Status ParseModel(const nlohmann::json& json);
  absl::Status ParsePreTokenizer(const nlohmann::json& json);
  absl::Status ParseAddedTokens(const nlohmann::json& json);
  absl::Status FindBosEos(const nlohmann::json& json);

  void EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const;
  void EncodeWord(std::string_view bytes, std::vector<int32_t>* ids) const;
  std::vector<int32_t> MergeWord(std::string_view bytes) const;

  std::vector<std::string> id_to_token_;  // (vocab_size) byte-level strings
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<uint8_t> is_special_;       // (vocab_size) dropped by Decode
  std::vector<uint8_t> is_added_;         // (vocab_size) content is raw text
  std::vector<int32_t> byte_id_;          // (256) id of each byte's symbol, -1 if none
  // (left id, right id) -> (rank, merged id); later duplicates win, as in HF.
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::vector<AddedToken> added_;
  std::vector<std::vector<int32_t>> added_by_first_byte_;  // (256) indices into added_, longest first
  std::vector<PreStep> pre_steps_;
  bool nfc_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;

  static constexpr size_t kCacheLimit = 1 << 18;  // words; the cache is cleared when full
  mutable std::mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
};

// The tokenizer named by a `--tokenizer` value or `data.tokenizer` key:
// "" or "byte" gives ByteTokenizer, anything else is a tokenizer.json path.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& spec);

}  // namespace baton
