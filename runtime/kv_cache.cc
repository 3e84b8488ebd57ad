// Paged KV cache storage and its free list (see kv_cache.h).
#include "runtime/kv_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

KvBlockPool::KvBlockPool(int64_t num_blocks) : num_blocks_(num_blocks) {
  free_.reserve(static_cast<size_t>(num_blocks));
  // Pushed in reverse so that a fresh pool hands out 0, 1, 2, ... (readable in tests).
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

bool KvBlockPool::Allocate(int64_t n, std::vector<int32_t>& table) {
  if (n < 0 || n > num_free()) return false;
  for (int64_t i = 0; i < n; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void KvBlockPool::Free(std::vector<int32_t>& table) {
  for (int32_t b : table) {
    BATON_CHECK(b >= 0 && b < num_blocks_);
    free_.push_back(b);
  }
  BATON_CHECK(num_free() <= num_blocks_);  // a double free would overflow the list
  table.clear();
}

int64_t KvCacheShape::BytesPerBlock() const {
  return int64_t{2} * layers * block_size * kv_heads * head_dim * static_cast<int64_t>(DTypeSize(dtype));
}

KvCacheShape KvCacheShape::For(const ModelConfig& c, DType dtype, int64_t block_size, int tp) {
  KvCacheShape s;
  s.layers = c.layers;
  s.kv_heads = c.kv_heads / tp;
  s.head_dim = c.head_dim();
  s.block_size = block_size;
  s.dtype = dtype;
  return s;
}

int64_t KvBlocksForBytes(const KvCacheShape& shape, int64_t bytes) {
  const int64_t per_block = shape.BytesPerBlock();
  return per_block > 0 ? std::max<int64_t>(0, bytes / per_block) : 0;
}

absl::StatusOr<KvCache> KvCache::Create(const KvCacheShape& shape, int64_t num_blocks, Allocator* alloc) {
  if (shape.block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("infer.block_size=", shape.block_size, " must be >= 1"));
  }
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the KV cache holds no block of ", shape.block_size, " tokens (", shape.BytesPerBlock(),
        " bytes each): raise infer.kv_cache_bytes or infer.kv_cache_fraction"));
  }
  if (num_blocks > INT32_MAX) return absl::InvalidArgumentError("KV cache: more than 2^31 blocks");
  KvCache cache(shape, num_blocks);
  const Shape pool = {num_blocks, shape.block_size, shape.kv_heads, shape.head_dim};
  for (int l = 0; l < shape.layers; ++l) {
    // Not zeroed: a position is always written before it is read, and
    // untouched pages of a large CPU budget then cost no resident memory.
    cache.k_.push_back(Tensor::Empty(pool, shape.dtype, alloc));
    cache.v_.push_back(Tensor::Empty(pool, shape.dtype, alloc));
  }
  return cache;
}

}  // namespace baton
