// `baton data inspect PREFIX`: what a Megatron .bin/.idx pair holds, shown
// to a person before a long run trains on it. It prints the dtype, the
// sequence, document and token counts, the token-id range checked against a
// vocabulary, and documents or training samples decoded with the dataset's
// tokenizer (bytes by default, a tokenizer.json when given). Training
// samples come from the same Sampler the trainer uses, so `--sample N` is
// exactly the N-th sample a run with that seq_len, seed and val_fraction
// reads (sample N of the run lands in step N / train.global_batch_size).
// cli.cc dispatches `data inspect` here; InspectDataset is the library half
// the tests call directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace baton {

struct DataInspectOptions {
  std::string prefix;              // PREFIX of PREFIX.bin / PREFIX.idx
  int64_t vocab_size = 0;          // model.vocab_size to check ids against; 0 = the tokenizer's
  std::string tokenizer = "byte";  // "byte" or a tokenizer.json, to decode with
  std::vector<int64_t> docs;       // documents to decode (0-based)
  std::vector<int64_t> samples;    // training samples to decode, in the order a run reads them
  int seq_len = 0;                 // train.seq_len; needed with samples
  int64_t seed = 1234;             // train.seed (the sample order)
  double val_fraction = 0.01;      // data.val_fraction (which documents are held out)
  int64_t max_tokens = 2048;       // tokens decoded per document or sample; 0 = all
  bool ids = false;                // also print the raw ids of what is decoded
};

// The report, and whether every token id fits the vocabulary.
struct DataInspectReport {
  std::string text;             // what `baton data inspect` prints on stdout
  bool ids_fit = true;          // false: some id is < 0 or >= the vocabulary size
  std::string ids_error;        // one line naming the offending ids when !ids_fit
};

// InvalidArgument naming the flag for a bad option (a --doc past the end, a
// --sample without --seq-len); NotFound / DataLoss for unreadable files.
absl::StatusOr<DataInspectReport> InspectDataset(const DataInspectOptions& options);

// The command: parses the arguments after `data inspect`, prints the report.
// Exit status 0, or 2 for bad input, including ids that do not fit the
// vocabulary (the report is printed first, then one error line on stderr).
int RunDataInspect(const std::vector<std::string>& args);

}  // namespace baton
