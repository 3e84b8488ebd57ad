// Token sampling and stop strings (see token_sampling.h). All arithmetic
// after reading the logits is in double, and candidate order is a total
// order (probability, then id), so the same inputs pick the same token on
// every machine.
#include "runtime/token_sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/rng.h"

namespace baton {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature=", temperature, " must be >= 0"));
  }
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k=", top_k, " must be >= 0 (0 = off)"));
  if (!(top_p > 0 && top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p=", top_p, " must be in (0, 1]"));
  }
  return absl::OkStatus();
}

double SamplingUniform(uint64_t seed, int64_t position) {
  const uint64_t pos = static_cast<uint64_t>(position);
  // The third counter word tells these draws apart from weight init's streams.
  const std::array<uint32_t, 4> r = Philox4x32_10(
      {static_cast<uint32_t>(pos), static_cast<uint32_t>(pos >> 32), 0x534d504cu /* "SMPL" */, 0},
      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  const uint64_t bits = (uint64_t{r[0]} << 21) ^ (uint64_t{r[1]} >> 11);  // 53 bits
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}

namespace {

template <typename T>
int32_t Argmax(const T* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;  // strict: the lowest id wins a tie
  }
  return static_cast<int32_t>(best);
}

template <typename T>
int32_t Sample(const T* logits, int64_t vocab, const SamplingParams& p, int64_t position) {
  if (p.temperature == 0) return Argmax(logits, vocab);
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  int64_t keep = vocab;
  if (p.top_k > 0 && p.top_k < vocab) {
    keep = p.top_k;
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), before);
  } else {
    std::sort(ids.begin(), ids.end(), before);
  }
  // Softmax of logits/temperature over the kept ids, most likely first.
  const double max = static_cast<double>(logits[ids[0]]) / p.temperature;
  std::vector<double> prob(static_cast<size_t>(keep));
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) {
    prob[i] = std::exp(static_cast<double>(logits[ids[i]]) / p.temperature - max);
    total += prob[i];
  }
  if (p.top_p < 1) {  // the shortest prefix whose probability reaches top_p (at least one id)
    double cum = 0;
    int64_t n = 0;
    while (n < keep && cum < p.top_p * total) cum += prob[n++];
    keep = std::max<int64_t>(n, 1);
    total = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  }
  const double target = SamplingUniform(p.seed, position) * total;
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (target < cum) return ids[i];
  }
  return ids[keep - 1];  // rounding left target at the very top
}

}  // namespace

int32_t SampleToken(const float* logits, int64_t vocab, const SamplingParams& p, int64_t position) {
  return Sample(logits, vocab, p, position);
}
int32_t SampleToken(const double* logits, int64_t vocab, const SamplingParams& p, int64_t position) {
  return Sample(logits, vocab, p, position);
}

std::vector<int32_t> SampleTokens(const Tensor& logits, const std::vector<SamplingParams>& params,
                                  const std::vector<int64_t>& positions) {
  BATON_CHECK(logits.rank() == 2 && logits.device() == Device::kCpu);
  const int64_t R = logits.dim(0), V = logits.dim(1);
  BATON_CHECK(static_cast<int64_t>(params.size()) == R && static_cast<int64_t>(positions.size()) == R);
  std::vector<int32_t> out(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    out[r] = logits.dtype() == DType::kF64 ? Sample(logits.data<double>() + r * V, V, params[r], positions[r])
                                           : Sample(logits.data<float>() + r * V, V, params[r], positions[r]);
  }
  return out;
}

size_t FindStop(std::string_view text, const std::vector<std::string>& stops, size_t search_from) {
  size_t best = std::string_view::npos;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const size_t from = search_from >= s.size() ? search_from - s.size() + 1 : 0;
    const size_t at = text.find(s, std::min(from, text.size()));
    if (at != std::string_view::npos && at < best) best = at;
  }
  return best;
}

}  // namespace baton
