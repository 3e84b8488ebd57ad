// Document split, packing and seeded epoch order for training samples; the
// contract is in sampler.h.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {
namespace {

uint64_t SplitMix64(uint64_t x) {  // Steele, Lea, Flood 2014 (the finalizer of SplittableRandom)
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Uniform in [0, n) by rejection, so the result depends only on the
// generator's outputs (uniform_int_distribution's algorithm is unspecified).
uint64_t UniformBelow(std::mt19937_64& gen, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // accept x < limit: n | limit
  uint64_t x;
  do x = gen(); while (x >= limit);
  return x % n;
}

void PrepareBatch(Tensor& t, int64_t rows, int64_t cols, const char* name) {
  if (!t.defined()) {
    t = Tensor::Empty({rows, cols}, DType::kI32);
    return;
  }
  BATON_CHECK_MSG(t.rank() == 2 && t.dim(0) == rows && t.dim(1) == cols && t.dtype() == DType::kI32 &&
                      t.device() == Device::kCpu && t.is_contiguous(),
                  name);
}

}  // namespace

uint64_t MixKey(uint64_t seed, uint64_t stream) { return SplitMix64(SplitMix64(seed) ^ stream); }

std::vector<int64_t> SeededPermutation(int64_t n, uint64_t key) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 gen(key);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(UniformBelow(gen, static_cast<uint64_t>(i) + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

absl::StatusOr<Sampler> Sampler::Create(const IndexedDataset& dataset, int seq_len, uint64_t seed,
                                        double val_fraction) {
  if (seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("train.seq_len: ", seq_len, " must be >= 1"));
  }
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.val_fraction: ", val_fraction, " must be in [0, 1)"));
  }
  Sampler s(dataset);
  s.seq_len_ = seq_len;
  s.seed_ = seed;
  const int64_t docs = dataset.num_documents();
  int64_t n_val = 0;
  if (val_fraction > 0.0 && docs > 0) {
    n_val = std::max<int64_t>(1, std::llround(val_fraction * static_cast<double>(docs)));
  }
  s.is_val_doc_.assign(static_cast<size_t>(docs), false);
  const std::vector<int64_t> doc_perm = SeededPermutation(docs, kSplitKey);
  for (int64_t i = 0; i < n_val; ++i) s.is_val_doc_[doc_perm[i]] = true;
  s.num_val_documents_ = n_val;
  s.num_train_documents_ = docs - n_val;

  for (int64_t d = 0; d < docs; ++d) {
    Stream& st = s.is_val_doc_[d] ? s.val_ : s.train_;
    for (int64_t q = dataset.document_index(d); q < dataset.document_index(d + 1); ++q) {
      st.sequences.push_back(q);
      st.starts.push_back(st.starts.back() + dataset.sequence_length(q));
    }
  }
  auto count_samples = [&](Stream& st, const char* split, const char* knob) -> absl::Status {
    const int64_t tokens = st.starts.back();
    if (tokens < int64_t{seq_len} + 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          knob, ": the ", split, " split has ", tokens, " tokens, fewer than train.seq_len + 1 = ",
          seq_len + 1, " (", dataset.num_documents(), " documents, ", dataset.num_tokens(),
          " tokens in the dataset)"));
    }
    st.num_samples = (tokens - 1) / seq_len;
    return absl::OkStatus();
  };
  BATON_RETURN_IF_ERROR(count_samples(s.train_, "training", "train.seq_len"));
  if (n_val > 0) BATON_RETURN_IF_ERROR(count_samples(s.val_, "validation", "data.val_fraction"));
  return s;
}

const std::vector<int64_t>& Sampler::Permutation(int64_t epoch) {
  if (perm_epoch_ != epoch) {
    perm_ = SeededPermutation(train_.num_samples, MixKey(seed_, static_cast<uint64_t>(epoch)));
    perm_epoch_ = epoch;
  }
  return perm_;
}

std::vector<int64_t> Sampler::NextSampleIds(int64_t count) {
  BATON_CHECK(count >= 0);
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(count));
  while (static_cast<int64_t>(ids.size()) < count) {
    if (state_.position == train_.num_samples) {
      ++state_.epoch;
      state_.position = 0;
    }
    ids.push_back(Permutation(state_.epoch)[state_.position++]);
  }
  return ids;
}

void Sampler::ReadStream(const Stream& s, int64_t pos, int64_t len, int32_t* out) const {
  BATON_CHECK(pos >= 0 && len >= 0 && pos + len <= s.starts.back());
  // The sequence holding `pos`: the last start <= pos.
  size_t k = static_cast<size_t>(std::upper_bound(s.starts.begin(), s.starts.end(), pos) -
                                 s.starts.begin()) - 1;
  while (len > 0) {
    const int64_t offset = pos - s.starts[k];
    const int64_t take = std::min(len, s.starts[k + 1] - pos);
    dataset_.Get(s.sequences[k], offset, take, out);
    out += take;
    pos += take;
    len -= take;
    ++k;
  }
}

void Sampler::Fill(const Stream& s, absl::Span<const int64_t> ids, Tensor& tokens,
                   Tensor& targets) const {
  const int64_t rows = static_cast<int64_t>(ids.size()), t = seq_len_;
  PrepareBatch(tokens, rows, t, "tokens must be (batch, seq_len) i32 contiguous on the CPU");
  PrepareBatch(targets, rows, t, "targets must be (batch, seq_len) i32 contiguous on the CPU");
  std::vector<int32_t> buf(static_cast<size_t>(t + 1));  // (T + 1,)
  int32_t* tok = tokens.data<int32_t>();   // (B, T)
  int32_t* tgt = targets.data<int32_t>();  // (B, T)
  for (int64_t r = 0; r < rows; ++r) {
    BATON_CHECK_MSG(ids[r] >= 0 && ids[r] < s.num_samples, "sample id out of range");
    ReadStream(s, ids[r] * t, t + 1, buf.data());
    std::copy(buf.begin(), buf.end() - 1, tok + r * t);
    std::copy(buf.begin() + 1, buf.end(), tgt + r * t);
  }
}

void Sampler::FillTrain(absl::Span<const int64_t> ids, Tensor& tokens, Tensor& targets) const {
  Fill(train_, ids, tokens, targets);
}

void Sampler::FillVal(absl::Span<const int64_t> ids, Tensor& tokens, Tensor& targets) const {
  Fill(val_, ids, tokens, targets);
}

void Sampler::NextBatch(int64_t batch, Tensor& tokens, Tensor& targets) {
  const std::vector<int64_t> ids = NextSampleIds(batch);
  FillTrain(ids, tokens, targets);
}

void Sampler::NextGlobalBatch(int64_t global_batch, int64_t first, int64_t count, Tensor& tokens,
                              Tensor& targets) {
  BATON_CHECK(first >= 0 && count >= 0 && first + count <= global_batch);
  const std::vector<int64_t> ids = NextSampleIds(global_batch);
  FillTrain(absl::MakeConstSpan(ids).subspan(static_cast<size_t>(first), static_cast<size_t>(count)),
            tokens, targets);
}

void Sampler::ValBatch(int64_t index, int64_t batch, Tensor& tokens, Tensor& targets) const {
  BATON_CHECK_MSG(val_.num_samples > 0, "ValBatch without a validation split");
  BATON_CHECK(index >= 0 && batch >= 0);
  std::vector<int64_t> ids(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) ids[i] = (index * batch + i) % val_.num_samples;
  FillVal(ids, tokens, targets);
}

absl::Status Sampler::Restore(const State& state) {
  if (state.epoch < 0 || state.position < 0 || state.position > train_.num_samples) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler state (epoch ", state.epoch, ", position ", state.position,
        ") does not fit this dataset: ", train_.num_samples, " training samples per epoch"));
  }
  state_ = state;
  return absl::OkStatus();
}

}  // namespace baton
