// The generation loop (see batch_generator.h).
#include "runtime/batch_generator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

BatchGenerator::BatchGenerator(DecodeForward& model, KvCache& cache, const Tokenizer* tokenizer,
                               const SchedulerConfig& config, int64_t max_seq_len)
    : model_(&model),
      tokenizer_(tokenizer),
      max_seq_len_(max_seq_len),
      vocab_(model.config().vocab_size),
      scheduler_(config, cache.pool(), cache.block_size()) {}

absl::Status BatchGenerator::Add(GenerationRequest request) {
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) return absl::InvalidArgumentError("the prompt is empty");
  if (n >= max_seq_len_) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", n, " tokens; the model's context is ",
                                                   max_seq_len_, " (prompt + at least one new token)"));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= vocab_) {
      return absl::InvalidArgumentError(absl::StrCat("token ", request.prompt[i], " at prompt position ", i,
                                                     " is outside the vocabulary [0, ", vocab_, ")"));
    }
  }
  if (request.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens=", request.max_new_tokens, " must be >= 1"));
  }
  BATON_RETURN_IF_ERROR(request.sampling.Validate());
  if (live_.count(request.handle)) return absl::InvalidArgumentError("a live request has the same handle");
  const int64_t want = std::min(n + request.max_new_tokens, max_seq_len_);
  BATON_ASSIGN_OR_RETURN(const int64_t cap, scheduler_.Add(request.handle, n, want));
  Live live;
  live.tokens = request.prompt;
  live.cap = cap;
  live.added = Clock::now();
  live.request = std::move(request);
  live_.emplace(live.request.handle, std::move(live));
  return absl::OkStatus();
}

bool BatchGenerator::Accept(Live& live, int32_t token, GenerationResult& result) {
  const GenerationRequest& r = live.request;
  const int64_t prompt = static_cast<int64_t>(r.prompt.size());
  const bool eos = r.stop_at_eos && tokenizer_ != nullptr && token == tokenizer_->eos_id();
  bool stop = eos;
  if (!eos) live.tokens.push_back(token);
  auto completion = [&] { return std::vector<int32_t>(live.tokens.begin() + prompt, live.tokens.end()); };
  // The text is needed every step only to find stop strings; without them it
  // is decoded once, at the end (a decode per step re-reads the whole completion).
  if (tokenizer_ != nullptr && !eos && !r.stop.empty()) {
    const size_t old = live.text.size();
    absl::StatusOr<std::string> text = tokenizer_->Decode(completion());
    if (text.ok()) live.text = std::move(*text);
    const size_t at = FindStop(live.text, r.stop, std::min(old, live.text.size()));
    if (at != std::string::npos) {
      live.text.resize(at);
      stop = true;
    }
  }
  const int64_t generated = static_cast<int64_t>(live.tokens.size()) - prompt + (eos ? 1 : 0);
  if (!stop && generated < r.max_new_tokens && static_cast<int64_t>(live.tokens.size()) < live.cap) return false;
  result.handle = r.handle;
  result.tokens = completion();
  if (tokenizer_ != nullptr && r.stop.empty()) {
    absl::StatusOr<std::string> text = tokenizer_->Decode(result.tokens);
    if (text.ok()) live.text = std::move(*text);
  }
  result.text = live.text;
  result.finish_reason = stop ? "stop" : "length";
  result.prompt_tokens = prompt;
  result.ttft_s = live.ttft_s;
  result.latency_s = std::chrono::duration<double>(Clock::now() - live.added).count();
  return true;
}

absl::StatusOr<std::vector<GenerationResult>> BatchGenerator::Step() {
  std::vector<GenerationResult> done;
  const std::vector<BatchScheduler::Item> items = scheduler_.Schedule();
  if (items.empty()) return done;
  const Clock::time_point start = Clock::now();
  DecodeBatch batch;
  bool prefill = false;
  for (const BatchScheduler::Item& it : items) {
    const Live& live = live_.at(it.handle);
    std::vector<int32_t> rows(live.tokens.begin() + it.start, live.tokens.begin() + it.start + it.count);
    batch.AddSequence(*it.table, rows, static_cast<int32_t>(it.start), /*want_last=*/true);
    if (it.count > 1 || it.start == 0) {
      prefill = true;
      stats_.prefill_tokens += it.count;
    }
  }
  batch.Finish();
  for (const BatchScheduler::Item& it : items) batch.greedy.push_back(live_.at(it.handle).request.sampling.temperature == 0);
  BATON_ASSIGN_OR_RETURN(Tensor logits, model_->Forward(batch));
  std::vector<SamplingParams> params;
  std::vector<int64_t> positions;
  bool all_greedy = true;
  for (const BatchScheduler::Item& it : items) {
    params.push_back(live_.at(it.handle).request.sampling);
    positions.push_back(it.start + it.count);  // the index the new token takes
    all_greedy &= params.back().temperature == 0;
  }
  // An all-greedy step picks on the device: R ids cross to the host, not R·V logits.
  const std::vector<int32_t> next =
      all_greedy ? GreedyTokens(logits) : SampleTokens(LogitsOnHost(logits), params, positions);
  const double now_s = std::chrono::duration<double>(Clock::now() - start).count();
  (prefill ? stats_.prefill_s : stats_.decode_s) += now_s;
  for (size_t i = 0; i < items.size(); ++i) {
    Live& live = live_.at(items[i].handle);
    if (live.ttft_s < 0) live.ttft_s = std::chrono::duration<double>(Clock::now() - live.added).count();
    ++stats_.generated_tokens;
    if (!prefill) ++stats_.decode_tokens;
    GenerationResult result;
    if (Accept(live, next[i], result)) {
      scheduler_.Finish(items[i].handle);
      live_.erase(items[i].handle);
      done.push_back(std::move(result));
    } else {
      scheduler_.AppendToken(items[i].handle);
    }
  }
  return done;
}

}  // namespace baton
