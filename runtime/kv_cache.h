// The paged key/value cache of batch inference (vLLM's PagedAttention
// layout): for every layer one K pool and one V pool of fixed-size blocks,
// allocated once at start-up and never resized, so a long run cannot
// fragment or run out of memory half-way. A sequence owns a block table
// (block ids in position order); token t of a sequence lives in block
// table[t / block_size], row t % block_size. Grouped-query attention is
// stored as it is computed: kv_heads heads per token, not the query heads.
// The scheduler (runtime/batch_scheduler.h) hands blocks out through
// KvBlockPool; the decode path (runtime/model_decode.h) writes and reads
// the pools. Invariant: a block id is either in the free list or in
// exactly one block table, never both.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model_config.h"
#include "runtime/tensor.h"

namespace baton {

// Which blocks are free. Pure bookkeeping: no memory of its own.
class KvBlockPool {
 public:
  explicit KvBlockPool(int64_t num_blocks);
  int64_t num_blocks() const { return num_blocks_; }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_used() const { return num_blocks_ - num_free(); }
  // Appends n block ids to `table`; false (and nothing taken) if fewer are free.
  bool Allocate(int64_t n, std::vector<int32_t>& table);
  // Returns every block of `table` to the free list and clears it.
  void Free(std::vector<int32_t>& table);

 private:
  int64_t num_blocks_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

// Blocks needed to hold `tokens` tokens.
inline int64_t BlocksForTokens(int64_t tokens, int64_t block_size) {
  return (tokens + block_size - 1) / block_size;
}

struct KvCacheShape {
  int layers = 0;           // held by this rank (a pipeline stage's layers)
  int64_t kv_heads = 0;     // this rank's (kv_heads / tp)
  int64_t head_dim = 0;
  int64_t block_size = 16;  // tokens per block
  DType dtype = DType::kF32;
  // Bytes of K and V of one block over all layers.
  int64_t BytesPerBlock() const;
  static KvCacheShape For(const ModelConfig& c, DType dtype, int64_t block_size, int tp = 1);
};

// Blocks that fit in `bytes` (at least 0).
int64_t KvBlocksForBytes(const KvCacheShape& shape, int64_t bytes);

class KvCache {
 public:
  // num_blocks >= 1, block_size >= 1: else InvalidArgument naming the value.
  // Memory from `alloc` (CPU or a CUDA allocator), not initialised.
  static absl::StatusOr<KvCache> Create(const KvCacheShape& shape, int64_t num_blocks,
                                        Allocator* alloc = DefaultCpuAllocator());

  const KvCacheShape& shape() const { return shape_; }
  int64_t block_size() const { return shape_.block_size; }
  int64_t num_blocks() const { return pool_.num_blocks(); }
  int64_t capacity_tokens() const { return num_blocks() * block_size(); }
  int64_t bytes() const { return num_blocks() * shape_.BytesPerBlock(); }
  KvBlockPool& pool() { return pool_; }
  const KvBlockPool& pool() const { return pool_; }
  Tensor& k(int layer) { return k_[layer]; }  // (num_blocks, block_size, KV, D)
  Tensor& v(int layer) { return v_[layer]; }  // (num_blocks, block_size, KV, D)

 private:
  KvCache(const KvCacheShape& shape, int64_t num_blocks) : shape_(shape), pool_(num_blocks) {}
  KvCacheShape shape_;
  KvBlockPool pool_;
  std::vector<Tensor> k_, v_;  // per layer
};

}  // namespace baton
