// Choosing the next token of a request from its logits (inference), as
// vLLM and HF do it: greedy (temperature 0), or temperature, then top-k,
// then top-p (nucleus) on the softmax, then one draw. The draw is
// counter-based (Philox4x32-10, runtime/rng.h) keyed by the request's seed
// and counted by the token's position in its sequence, so a request's
// tokens are a pure function of (its logits, its parameters, its seed):
// they do not depend on its batch-mates, on the batch order, on a
// preemption and recompute, or on how many requests ran before it.
// Not to be confused with runtime/sampler.h (which picks training data).
// Also here: stop strings, matched on the decoded text (a stop string may
// span tokens), as the OpenAI API defines them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace baton {

struct SamplingParams {
  double temperature = 1.0;  // > 0; 0 = greedy (argmax, lowest id on ties)
  int top_k = 0;             // keep the k most likely tokens; 0 = off
  double top_p = 1.0;        // keep the smallest set with probability >= top_p, in (0, 1]; 1 = off
  uint64_t seed = 0;         // the request's seed
  absl::Status Validate() const;  // names the field: "top_p=1.5 must be in (0, 1]"
};

// The uniform in [0, 1) of draw `position` of stream `seed` (53 bits).
double SamplingUniform(uint64_t seed, int64_t position);

// The token for one row of logits (V values). `position` is the index the
// new token will have in its sequence (prompt length + tokens generated).
int32_t SampleToken(const float* logits, int64_t vocab, const SamplingParams& p, int64_t position);
int32_t SampleToken(const double* logits, int64_t vocab, const SamplingParams& p, int64_t position);
// Row r of logits (R, V) (f32 or f64, on the host) with params[r], positions[r].
std::vector<int32_t> SampleTokens(const Tensor& logits, const std::vector<SamplingParams>& params,
                                  const std::vector<int64_t>& positions);

// The start of the earliest match of any stop string that ends at or after
// text[search_from] (so it may begin before it), or npos. After appending
// to a text of old_length, pass search_from = old_length: matches wholly
// inside the old text were looked for before.
size_t FindStop(std::string_view text, const std::vector<std::string>& stops, size_t search_from = 0);

}  // namespace baton
