// Turns an IndexedDataset into training and validation samples: a
// simplified Megatron GPTDataset. The trainer asks it for batches; the
// checkpoint saves its State so a resumed run reads the same samples.
//
// - Split by documents: a permutation of the documents under a fixed key
//   (kSplitKey, not the training seed, so every run holds out the same
//   documents) puts round(val_fraction · documents) of them (at least one
//   when val_fraction > 0) in validation, the rest in training.
// - Packing: each split's documents, in dataset order, form one token
//   stream; sample i is stream tokens [i·T, i·T + T + 1) (T = seq_len):
//   tokens = the first T, targets = the last T. Samples cross document
//   boundaries and share one token with the next, as Megatron's do;
//   (stream_tokens - 1) / T samples, the tail is dropped.
// - Order: training samples are visited in a Fisher-Yates permutation of
//   std::mt19937_64 keyed by (seed, epoch), written here because
//   std::shuffle and std::uniform_int_distribution are
//   implementation-defined; validation samples in stream order.
// Invariant: the sequence of training sample ids depends only on (dataset,
// seq_len, seed, val_fraction) and the State, never on how callers group it
// into batches, so data-parallel ranks that each take a slice of the same
// global batch see together exactly what one rank would see.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/check.h"
#include "runtime/indexed_dataset.h"
#include "runtime/tensor.h"

namespace baton {

// Where the training stream stands: the next sample is position `position`
// of epoch `epoch`'s permutation. Saved in checkpoints.
struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;  // in [0, num_train_samples]
  bool operator==(const SamplerState&) const = default;
};

class Sampler {
 public:
  using State = SamplerState;
  static constexpr uint64_t kSplitKey = 0x5eed5b17ULL;  // document split, fixed across runs

  // seq_len >= 1; val_fraction in [0, 1), 0 = no validation. InvalidArgument
  // (naming train.seq_len or data.val_fraction) when a split has fewer than
  // seq_len + 1 tokens.
  static absl::StatusOr<Sampler> Create(const IndexedDataset& dataset, int seq_len, uint64_t seed,
                                        double val_fraction);

  int seq_len() const { return seq_len_; }
  int64_t num_train_samples() const { return train_.num_samples; }
  int64_t num_val_samples() const { return val_.num_samples; }
  int64_t num_train_tokens() const { return train_.starts.back(); }
  int64_t num_val_tokens() const { return val_.starts.back(); }
  int64_t num_train_documents() const { return num_train_documents_; }
  int64_t num_val_documents() const { return num_val_documents_; }
  bool is_val_document(int64_t doc) const {
    BATON_CHECK(doc >= 0 && doc < static_cast<int64_t>(is_val_doc_.size()));
    return is_val_doc_[doc];
  }

  // ---- training ----
  // The ids of the next `count` training samples; advances the state,
  // rolling into the next epoch (a fresh permutation) when one runs out.
  std::vector<int64_t> NextSampleIds(int64_t count);
  // Writes training sample ids[i] into row i of tokens/targets, each
  // (ids.size(), seq_len) i32 on the CPU; undefined tensors are allocated.
  void FillTrain(absl::Span<const int64_t> ids, Tensor& tokens, Tensor& targets) const;
  // NextSampleIds(batch) then FillTrain: a whole batch for one rank.
  void NextBatch(int64_t batch, Tensor& tokens, Tensor& targets);
  // Data parallelism: advances by `global_batch` samples (every rank calls
  // this with the same global_batch) and fills rows with samples
  // [first, first + count) of that global batch; rank r of dp passes
  // first = r · count, count = global_batch / dp.
  void NextGlobalBatch(int64_t global_batch, int64_t first, int64_t count, Tensor& tokens,
                       Tensor& targets);

  // ---- validation ----
  // Writes validation sample ids[i] (each < num_val_samples) into row i.
  void FillVal(absl::Span<const int64_t> ids, Tensor& tokens, Tensor& targets) const;
  // Batch `index` of size `batch`: samples (index · batch + i) mod
  // num_val_samples, so a final partial batch wraps to the start.
  void ValBatch(int64_t index, int64_t batch, Tensor& tokens, Tensor& targets) const;

  // ---- checkpointing ----
  State state() const { return state_; }
  // InvalidArgument when the state does not belong to this sampler (a
  // position past the epoch's end, a negative epoch).
  absl::Status Restore(const State& state);

 private:
  // One split: the sequences of its documents in order, and where each
  // starts in the split's token stream.
  struct Stream {
    std::vector<int64_t> sequences;    // (S,) sequence ids into the dataset
    std::vector<int64_t> starts{0};    // (S + 1,) token offset of each; back() = total
    int64_t num_samples = 0;
  };

  explicit Sampler(const IndexedDataset& dataset) : dataset_(dataset) {}
  void ReadStream(const Stream& s, int64_t pos, int64_t len, int32_t* out) const;
  void Fill(const Stream& s, absl::Span<const int64_t> ids, Tensor& tokens, Tensor& targets) const;
  const std::vector<int64_t>& Permutation(int64_t epoch);

  IndexedDataset dataset_;
  int seq_len_ = 0;
  uint64_t seed_ = 0;
  Stream train_, val_;
  std::vector<bool> is_val_doc_;  // (documents,)
  int64_t num_train_documents_ = 0, num_val_documents_ = 0;
  State state_;
  std::vector<int64_t> perm_;  // (num_train_samples,) order of epoch perm_epoch_
  int64_t perm_epoch_ = -1;
};

// The Fisher-Yates permutation of [0, n) under mt19937_64(key); exposed so
// tests can pin it and other modules can shuffle the same way.
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t key);
// A 64-bit key from (seed, epoch), via SplitMix64 so nearby seeds differ.
uint64_t MixKey(uint64_t seed, uint64_t stream);

}  // namespace baton
