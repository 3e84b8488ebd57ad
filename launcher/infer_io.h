// The files of `baton infer`: reading prompt lines and writing result
// lines, in baton's own JSONL format or OpenAI's Batch API format (the
// one vLLM's run_batch reads and writes), detected per file from its first
// non-empty line (`custom_id` means OpenAI). A bad line becomes an error
// record naming its line number and id, never a failed run.
// Crash safety: results are appended one whole line per write(2) to a file
// opened O_APPEND, as each request finishes; a restarted run reads the
// output, cuts a torn last line, and skips every id (or, for lines that
// had no readable id, every line number) already answered. So after any
// number of kills and restarts there is one line per input line.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace baton {

enum class InferFormat { kBaton, kOpenAi };
const char* InferFormatName(InferFormat f);  // "baton", "openai"

// One prompt line, as written (defaults are the driver's business).
struct InferRequest {
  int64_t line = 0;           // 1-based line number in the prompt file
  nlohmann::json id;          // baton `id` (string or integer) or OpenAI `custom_id` (string)
  std::string prompt;         // the text, unless `tokens` is set
  std::optional<std::vector<int32_t>> tokens;  // a pre-tokenized prompt
  std::optional<int64_t> max_new_tokens;       // baton max_new_tokens, OpenAI max_tokens
  std::optional<double> temperature, top_p;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::string model;          // OpenAI body.model, echoed in the response
};

// A line that could not become a request: its number, its id if one was
// readable (null otherwise) and the reason.
struct InferLineError {
  int64_t line = 0;
  nlohmann::json id;
  std::string message;
};

// The key an id is known by in the output ("\"a\"" and "1" differ).
std::string IdKey(const nlohmann::json& id);

// kOpenAi if the first non-empty line is a JSON object with "custom_id".
InferFormat DetectInferFormat(std::string_view first_line);

// One line (without its newline). Exactly one of the two is set.
struct ParsedLine {
  std::optional<InferRequest> request;
  std::optional<InferLineError> error;
};
ParsedLine ParseInferLine(std::string_view text, int64_t line, InferFormat format);

// What a finished request produced (the driver fills it from the generator).
struct InferResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "stop" or "length"
  int64_t prompt_tokens = 0;
  double ttft_s = 0, latency_s = 0;
};

// The output line (no newline) for a result or an error, in `format`.
std::string FormatResult(InferFormat format, const InferRequest& request, const InferResult& result);
std::string FormatError(InferFormat format, const InferLineError& error);

// What an existing output file already answers.
struct AnsweredSet {
  std::set<std::string> ids;     // IdKey of every answered id
  std::set<int64_t> id_less;     // line numbers of error records without an id
  int64_t lines = 0;             // complete records read
  bool cut_torn_tail = false;    // a partial last line was removed
};

// The append-only result file. Open() creates it or, when it exists, reads
// what it answers and (if `repair`) truncates a torn last line; only one
// process should repair, before the others open it.
class InferOutput {
 public:
  static absl::StatusOr<InferOutput> Open(const std::string& path, bool repair);
  InferOutput(InferOutput&& o) noexcept;
  InferOutput& operator=(InferOutput&&) = delete;
  ~InferOutput();
  const AnsweredSet& answered() const { return answered_; }
  // Appends line + '\n' in one write(2): after it returns, a kill -9 loses nothing.
  absl::Status Append(const std::string& line);

 private:
  InferOutput(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
  AnsweredSet answered_;
};

// Reads an output file's answers (format-agnostic: `custom_id` or `id`).
absl::StatusOr<AnsweredSet> ReadAnswered(const std::string& path, bool repair);

}  // namespace baton
