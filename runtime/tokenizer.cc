// ByteTokenizer: a byte is its own id, so encoding is a widening copy.
#include "runtime/tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace baton {

std::vector<int32_t> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

absl::StatusOr<std::string> ByteTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string text;
  text.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= kVocabSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ByteTokenizer: token id ", id, " at position ", i, " is outside [0, ", kVocabSize, ")"));
    }
    if (id < 256) text.push_back(static_cast<char>(id));
  }
  return text;
}

}  // namespace baton
