// The inference forward of a Model over the paged KV cache: each call takes
// new tokens of several sequences (a whole prompt being prefilled, or one
// token per sequence being decoded, or both mixed: continuous batching),
// writes their keys and values into the cache and returns the logits of the
// rows asked for (usually each sequence's last). It reuses the Model's
// weights by name and the op table, so it is the training forward with the
// attention replaced by paged attention over cached positions.
// Invariant (tested in f64 to 1e-10): the logits of a token equal those of
// Model::Logits over the whole sequence at its position, however the
// sequence was cut into calls and wherever its blocks are.
// Tensor parallelism is the training layers' (LayerForward): q/k/v and
// gate/up column-parallel, a tp sum after wo and after w_down, the cache
// holding this rank's kv heads, the embedding and lm head split over the
// vocabulary. Sampling (temperature, top-k, top-p) needs whole rows, so the
// head all-gathers its (R, V/tp) logits: every tp rank returns the same
// (R, V), and the samplers run unchanged. When every row is greedy
// (DecodeBatch::greedy) only (max, index) per row crosses the tp group. A pipeline stage runs one
// DecodeModel on its slice through ForwardPart (hidden rows in and out);
// parallel/pipelined_decode.h drives the stages.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/paged_attention.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/tensor.h"

namespace baton {

class DecodeGraphs;

// One call's rows, grouped or not by sequence (rows are independent).
struct DecodeBatch {
  std::vector<int32_t> tokens;        // (N) token ids
  std::vector<int32_t> row_seq;       // (N) index of the row's sequence in block_tables
  std::vector<int32_t> row_pos;       // (N) position of the token in its sequence
  std::vector<int32_t> block_tables;  // (S, max_blocks) block ids, -1 padded
  int64_t max_blocks = 0;
  std::vector<int32_t> logit_rows;    // rows whose logits are returned, in this order
  // Per logit row (empty: none): 1 when the caller takes only the row's
  // argmax (greedy). Under tp such a row crosses the tp group as (max,
  // index) and comes back with its max at the argmax and -inf elsewhere.
  std::vector<uint8_t> greedy;

  // Appends sequence `table` with tokens at positions start, start+1, ...;
  // with `want_last`, the last new row's logits are asked for. Returns the
  // sequence index. Call Finish() after the last AddSequence.
  int AddSequence(const std::vector<int32_t>& table, const std::vector<int32_t>& new_tokens, int32_t start,
                  bool want_last);
  void Finish();  // lays the tables out as (S, max_blocks)
  int64_t rows() const { return static_cast<int64_t>(tokens.size()); }

 private:
  std::vector<std::vector<int32_t>> tables_;
};

// What the generation loop calls for one step: logits (R, V) of the
// batch's logit rows, the same on every rank that calls it. DecodeModel
// (one rank, or a tp group) and PipelinedDecode (parallel/, a pipeline of
// stages) implement it.
class DecodeForward {
 public:
  virtual ~DecodeForward() = default;
  virtual absl::StatusOr<Tensor> Forward(const DecodeBatch& batch) = 0;
  virtual const ModelConfig& config() const = 0;
};

class DecodeModel final : public DecodeForward {
 public:
  // `model` is any slice at any tp size without sequence parallelism
  // (else FailedPrecondition), on the CPU or a GPU; `cache` must match the
  // slice's shape (its layers, this rank's kv heads, head dim, compute
  // dtype) and device. Both outlive this object.
  static absl::StatusOr<DecodeModel> Create(Model& model, KvCache& cache);

  // Runs the batch: K/V of every row written into the cache at (sequence,
  // position); rows attend to positions 0..row_pos of their sequence, which
  // must all be in the cache after this call's writes. Returns logits
  // (logit_rows.size(), V) in the model's compute dtype, on its device.
  // The whole model only (else FailedPrecondition).
  absl::StatusOr<Tensor> Forward(const DecodeBatch& batch) override;
  // One slice's share: `input` (N, C) is the previous part's output (null
  // on the embedding part, which reads batch.tokens); `output` (N, C) is
  // written on a part without the head (null on the head part). Returns the
  // logits as Forward does on the head part, an empty tensor elsewhere.
  absl::StatusOr<Tensor> ForwardPart(const DecodeBatch& batch, const Tensor* input, Tensor* output);
  const ModelConfig& config() const override { return model_->config(); }
  const ModelSlice& slice() const { return model_->slice(); }
  DType dtype() const { return model_->dtype(); }
  Device device() const { return model_->device(); }
  // CUDA graphs for whole-model (pp = 1, tp = 1) steps of up to max_rows
  // rows (runtime/decode_graph.h): on by default on a GPU; off runs every
  // step eagerly (the fallback when a device rejects graphs:
  // infer.cuda_graphs=false). No effect on the CPU or under tp/pp.
  // With graphs on, returned logits are valid until the next Forward.
  void set_cuda_graphs(bool on, int64_t max_rows = 512);
  bool cuda_graphs() const { return graphs_ != nullptr; }
  int64_t graphs_captured() const;  // 0 without graphs
  // OK, or why a bucket's capture or replay failed (it fell back to eager steps).
  absl::Status graphs_status() const;

 private:
  DecodeModel(Model& model, KvCache& cache) : model_(&model), cache_(&cache), tp_(model.tensor_parallel()) {}
  absl::Status CheckBatch(const DecodeBatch& b) const;
  // The integers of b as the kernels read them (one upload on a GPU, kept in `ints`).
  cpu::PagedRows Rows(const DecodeBatch& b, Tensor& tokens, Tensor& ints) const;
  // Final norm and (vocab-parallel) lm head on the logit rows of x.
  absl::StatusOr<Tensor> Head(const DecodeBatch& b, const Tensor& x);
  // The (R, V) result of an all-greedy head under tp from the local logits.
  absl::StatusOr<Tensor> ShardedArgmax(const Tensor& local);
  const Tensor& Weight(const std::string& name) const;  // compute copy or value
  // x (N, C) in, the layer's output out; dev_rows: b's rows as the
  // attention kernels read them (device pointers on a GPU).
  absl::Status LayerStep(int layer, const DecodeBatch& b, const cpu::PagedRows& dev_rows, Tensor& x);
  // The step on x's rows (tokens.dim(0), maybe padded on a GPU); logits of
  // the rows in dev_logit_rows (R of them, device) or b.logit_rows (CPU),
  // into *logits_out when defined (else allocated and kept there; null: allocated).
  absl::StatusOr<Tensor> Run(const DecodeBatch& b, const Tensor& tokens, const cpu::PagedRows& dev_rows,
                             const int32_t* dev_logit_rows, int64_t R, Tensor* logits_out = nullptr);
  Allocator* Alloc() const;  // activations: the model's device (or the graphs' arena)
  // Saved statistics (rstd): f32 on a GPU, the compute dtype on the CPU.
  DType StatDType() const { return model_->device() == Device::kCpu ? model_->dtype() : DType::kF32; }

  Model* model_;
  KvCache* cache_;
  TpOps tp_;
  std::shared_ptr<DecodeGraphs> graphs_;  // null: eager steps
  Allocator* alloc_override_ = nullptr;   // set while a graph body runs
};

// Logits as f32 or f64 on the host (what token sampling reads).
Tensor LogitsOnHost(const Tensor& logits);
// The argmax of each row of logits (R, V), lowest id on ties — greedy
// sampling's pick — computed where the logits are: on a GPU only R ids
// cross to the host instead of R·V logits.
std::vector<int32_t> GreedyTokens(const Tensor& logits);

}  // namespace baton
