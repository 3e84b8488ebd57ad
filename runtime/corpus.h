// Raw text to a Megatron indexed dataset: the library half of
// `baton data tokenize`. Input files are in fortune(6) format (the default
// corpus is Debian's `fortunes` under /usr/share/games/fortunes): lines equal
// to "%" separate documents; a file without such lines is one document.
// Each document becomes one sequence BOS + Encode(text) + EOS and one
// Megatron document. Invariant: documents keep input order (files in the
// order given, a directory's files sorted by name), so the same inputs
// always give byte-identical .bin/.idx files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer.h"

namespace baton {

struct TokenizeStats {
  int64_t files = 0;      // input files read
  int64_t documents = 0;  // documents written, one sequence each
  int64_t bytes = 0;      // bytes of document text (separator lines excluded)
  int64_t tokens = 0;     // tokens written, BOS and EOS included
};

// Documents of one fortune-format text, in order. A document is the text
// between separator lines, each line keeping its '\n'; documents that are
// empty or only whitespace are left out.
std::vector<std::string_view> SplitDocuments(std::string_view text);

// Expands `inputs` into files: a file stays as given; a directory becomes
// its regular files sorted by name, without symlinks (fortunes' *.u8) and
// strfile indices (*.dat). NotFound naming a missing input; InvalidArgument
// when nothing is left.
absl::StatusOr<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& inputs);

// Tokenizes every document of ExpandInputs(inputs) into PREFIX.bin/.idx with
// dtype OptimalIndexDType(tokenizer.vocab_size()).
absl::StatusOr<TokenizeStats> TokenizeFiles(const std::vector<std::string>& inputs,
                                            const Tokenizer& tokenizer, const std::string& prefix);

}  // namespace baton
