// The generation loop of batch inference: requests in, completions out,
// joining the continuous-batching scheduler (which sequences run), the
// cached decode forward (their logits), token sampling (their next tokens)
// and the tokenizer (stop strings on the text). One Step() is one forward
// over the whole batch. Knows nothing of files, ranks or formats: the
// launcher's `baton infer` feeds it and writes what it returns.
// Invariant: a request's tokens depend only on its prompt, its parameters
// and the model — not on its batch-mates, the batch size, preemptions, or
// the cache size (tested with a prompt alone and in a crowded batch).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/batch_scheduler.h"
#include "runtime/kv_cache.h"
#include "runtime/model_decode.h"
#include "runtime/token_sampling.h"
#include "runtime/tokenizer.h"

namespace baton {

struct GenerationRequest {
  int64_t handle = 0;             // the caller's id, unique among live requests
  std::vector<int32_t> prompt;    // >= 1 token
  int64_t max_new_tokens = 16;    // >= 1
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings; the completion text ends before the first match
  bool stop_at_eos = true;        // the tokenizer's EOS ends the completion (not included)
};

struct GenerationResult {
  int64_t handle = 0;
  std::vector<int32_t> tokens;  // the completion's ids (up to the one that completed a stop string)
  std::string text;             // the completion, cut before a stop string
  const char* finish_reason = "length";  // "stop" (EOS or a stop string) or "length"
  int64_t prompt_tokens = 0;
  double ttft_s = 0;     // Add to first token
  double latency_s = 0;  // Add to finish
};

struct GenerationStats {
  int64_t prefill_tokens = 0;    // tokens run through prefills (recomputes included)
  int64_t generated_tokens = 0;  // tokens sampled, in any step
  int64_t decode_tokens = 0;     // tokens sampled in decode-only steps (over decode_s: the decode rate)
  double prefill_s = 0;        // time in steps that held a prefill
  double decode_s = 0;         // time in decode-only steps
};

class BatchGenerator {
 public:
  // max_seq_len: the model's context (prompt + completion), >= 1. The
  // tokenizer (null: no text, no stop strings) and the others outlive this.
  BatchGenerator(DecodeForward& model, KvCache& cache, const Tokenizer* tokenizer, const SchedulerConfig& config,
                 int64_t max_seq_len);

  // InvalidArgument (the reason, for a per-line error) when the prompt is
  // empty or longer than the context or the cache, a token is outside the
  // vocabulary, or a parameter is out of range. The request is dropped then.
  absl::Status Add(GenerationRequest request);
  // One forward of the scheduled batch; the requests that finished in it.
  absl::StatusOr<std::vector<GenerationResult>> Step();
  bool idle() const { return scheduler_.idle(); }
  int64_t live() const { return static_cast<int64_t>(live_.size()); }

  const SchedulerStats& scheduler_stats() const { return scheduler_.stats(); }
  const GenerationStats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Live {
    GenerationRequest request;
    std::vector<int32_t> tokens;  // prompt + generated
    int64_t cap = 0;              // most tokens it may reach (context, cache)
    std::string text;             // decoded completion so far
    Clock::time_point added;
    double ttft_s = -1;
  };
  // Appends `token` to `live`; true (with the result filled) when it is done.
  bool Accept(Live& live, int32_t token, GenerationResult& result);

  DecodeForward* model_;
  const Tokenizer* tokenizer_;
  int64_t max_seq_len_;
  int64_t vocab_;
  BatchScheduler scheduler_;
  std::unordered_map<int64_t, Live> live_;
  GenerationStats stats_;
};

}  // namespace baton
