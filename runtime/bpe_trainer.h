// Byte-level BPE training, the library half of `baton data train-tokenizer`.
// A port of HF `tokenizers`' BpeTrainer (models/bpe/trainer.rs) so that the
// same corpus gives the same merges: documents are cut into GPT-2 regex
// pre-tokens and counted; the alphabet is all 256 byte symbols, numbered in
// order of their byte-level code point (as HF sorts its alphabet); then the
// most frequent adjacent pair is merged, repeatedly, ties going to the
// smallest (left id, right id), with HF's lazy priority queue and its
// per-word merge (left to right, non-overlapping). Special tokens take the
// last ids. Invariant: the result depends only on the multiset of
// documents, never on hash order or threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace baton {

struct BpeTrainerConfig {
  int32_t vocab_size = 0;  // total ids, special tokens included; >= 256 + specials
  // Added as special tokens with the last ids, in order; the first is BOS,
  // the last EOS.
  std::vector<std::string> special_tokens = {"<|begin_of_text|>", "<|end_of_text|>"};
  int64_t min_frequency = 0;  // pairs seen fewer times are never merged; 0 = off
};

struct BpeModel {
  std::vector<std::string> vocab;                           // id -> byte-level string, specials last
  std::vector<std::pair<std::string, std::string>> merges;  // byte-level strings, in rank order
  std::vector<std::string> special_tokens;                  // contents of the last ids
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerConfig config) : config_(std::move(config)) {}

  // Counts the GPT-2 regex pre-tokens of one document.
  void AddDocument(std::string_view text);
  // Counts one pre-token directly (tests, and callers with their own split).
  void AddWord(std::string_view bytes, int64_t count = 1);

  // InvalidArgument naming vocab_size when it cannot hold the alphabet and
  // the special tokens. The vocabulary is smaller than vocab_size when the
  // corpus runs out of pairs.
  absl::StatusOr<BpeModel> Train() const;

  const absl::flat_hash_map<std::string, int64_t>& word_counts() const { return word_counts_; }

 private:
  BpeTrainerConfig config_;
  absl::flat_hash_map<std::string, int64_t> word_counts_;  // raw bytes of a pre-token -> count
};

// HF tokenizer.json text for `model`: ByteLevel pre-tokenizer (GPT-2 regex,
// no prefix space) and decoder, specials in added_tokens only, and a
// TemplateProcessing post-processor that prepends the first special (BOS).
std::string BpeModelToJson(const BpeModel& model);

// ByteTokenizer as a BpeModel: id b is byte b, no merges, BOS 256 and EOS
// 257 as "<|begin_of_text|>" / "<|end_of_text|>". Its tokenizer.json lets HF
// `tokenizers` encode text exactly as baton's byte-level models were trained.
BpeModel ByteTokenizerModel();

}  // namespace baton
