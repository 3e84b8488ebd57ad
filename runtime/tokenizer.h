// Tokenizers turn text into token ids and back. Tokenizer is the interface
// the data pipeline (`baton data tokenize`, corpus.h) and inference use;
// ByteTokenizer is the one every job can use with no vocabulary file:
// ids 0..255 are the bytes themselves, 256 is BOS, 257 is EOS (vocab 258).
// A BPE tokenizer will sit behind the same interface. Invariant:
// Decode(Encode(s)) == s for every byte string s.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace baton {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Ids of `text`, without BOS/EOS (callers frame documents themselves).
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;
  // Text of `ids`; special ids (BOS, EOS) are dropped. InvalidArgument
  // naming the position for an id outside [0, vocab_size).
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBos = 256;
  static constexpr int32_t kEos = 257;
  static constexpr int32_t kVocabSize = 258;

  std::vector<int32_t> Encode(std::string_view text) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return kVocabSize; }
  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }
};

}  // namespace baton
