// The tokenizer commands behind the CLI (launcher/cli.cc dispatches to
// them; runtime/bpe_trainer.h and runtime/bpe_tokenizer.h do the work):
//   baton data train-tokenizer --input FILE... --vocab-size N --output tokenizer.json
//         [--special-tokens A,B] [--min-frequency N]
//   baton data encode --tokenizer T --input FILE... [--output FILE] [--pieces]
// Each takes the arguments after its command name, prints one summary line
// (encode: one line of ids per document) and returns the exit status: 0
// done, 2 bad input (one line on stderr), 1 failure at run time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer.h"

namespace baton {

// Trains a byte-level BPE on the documents of --input (files or fortune
// directories, as `data tokenize` reads them) and writes tokenizer.json.
int RunTrainTokenizer(const std::vector<std::string>& args);

// Writes the ids of every document of --input, one line per document,
// space-separated, without BOS/EOS: the baton half of
// scripts/tokenizer_parity.py. With --pieces, each line holds the
// document's pre-tokens instead, in hex, to check the regex on its own.
int RunEncode(const std::vector<std::string>& args);

// The tokenizer of a `--tokenizer` flag: "" or "byte" is ByteTokenizer,
// anything else a tokenizer.json path (errors name the path and field).
absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromFlag(const std::string& path);

}  // namespace baton
