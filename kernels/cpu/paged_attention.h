// Attention of new query rows over a paged key/value cache on the CPU: the
// reference for the CUDA decode kernel and the path batch inference runs on
// hosts. Every query row belongs to one sequence (row_seq) at one position
// (row_pos) and attends causally to that sequence's cached positions
// 0..row_pos, which are read through its block table: position t lives in
// block table[t / block_size], row t % block_size. Prefill (many rows of a
// sequence) and decode (one row per sequence) are the same call. Grouped
// query attention as kernels/cpu/attention.h: query head hh reads kv head
// hh / (h / kv), scale 1/sqrt(d), max-subtracted softmax in T.
// Also here: writing new rows' K/V into the pools, and RoPE at explicit
// positions (the training RoPE assumes positions 0..T-1).
// Rows are independent: the result of a row does not depend on which other
// rows share the call (batch independence of inference).
#pragma once

#include <cstdint>

#include "kernels/cpu/rope.h"

namespace baton::cpu {

// Where a call's rows live in the cache.
struct PagedRows {
  const int32_t* block_tables = nullptr;  // (num_seqs, max_blocks) block ids
  int64_t max_blocks = 0;                 // row stride of block_tables
  const int32_t* row_seq = nullptr;       // (rows) sequence index into block_tables
  const int32_t* row_pos = nullptr;       // (rows) position of the row in its sequence
  int64_t rows = 0;
  int64_t block_size = 0;
};

// q (rows, h, d); k_pool, v_pool (num_blocks, block_size, kv, d); out (rows, h, d).
// Positions 0..row_pos of each row's sequence must have been written.
template <typename T>
void PagedAttentionForward(const T* q, const T* k_pool, const T* v_pool, const PagedRows& r, int64_t h,
                           int64_t kv, int64_t d, T* out);

// k_new, v_new (rows, kv, d) copied into the pools at each row's (sequence, position).
template <typename T>
void PagedKvWrite(const T* k_new, const T* v_new, const PagedRows& r, int64_t kv, int64_t d, T* k_pool,
                  T* v_pool);

// x (rows, h, d) rotated in place, row i by angle pos[i]·inv_freq (the
// training RoPE's formula: angle in double, cos/sin rounded to T).
template <typename T>
void RopeAtPositions(T* x, const int32_t* pos, int64_t rows, int64_t h, int64_t d, const RopeParams& p);

}  // namespace baton::cpu
