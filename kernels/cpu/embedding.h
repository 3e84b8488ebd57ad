// Token embedding lookup on the CPU, vocab-parallel aware: a rank holds
// rows [vocab_start, vocab_start + v_local) of the table; tokens outside
// that range produce zero rows (the tensor-parallel all-reduce sums the
// shards). The backward is a scatter-add done per column block with rows
// in order, so repeated tokens add up in a fixed order (deterministic).
#pragma once

#include <cstdint>

namespace baton::cpu {

// tokens (n); table (v_local, c); out (n, c).
template <typename T>
void EmbeddingForward(const int32_t* tokens, const T* table, int64_t vocab_start, int64_t v_local,
                      int64_t n, int64_t c, T* out);
// dtable (v_local, c) += scatter of dout (n, c).
template <typename T>
void EmbeddingBackward(const T* dout, const int32_t* tokens, int64_t vocab_start, int64_t v_local,
                       int64_t n, int64_t c, T* dtable);

}  // namespace baton::cpu
