// Paged attention for decode and prefill on the GPU, with the KV-cache
// write and RoPE at explicit positions (reference and contract:
// kernels/cpu/paged_attention.h; the PagedRows pointers are device
// pointers here). f32 or bf16 storage, fp32 arithmetic. Also the greedy
// pick on the device (argmax per row, lowest id on ties, like
// runtime/token_sampling's), so a greedy decode step copies back one id per
// sequence instead of its logits.
// Attention: one thread block per (row, query head); its warps take
// positions round-robin with an online softmax each, lanes split the head
// dimension, and the warps' partial results merge in shared memory at the
// end. Head dims up to 256 (multiples of 2).
// Padding rows (a CUDA-graph bucket wider than the batch, see
// runtime/decode_graph.h) have row_pos < 0: the KV write skips them and
// their attention output is zeros; RoPE rotates them harmlessly.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

// q (rows, h, d); pools (num_blocks, block_size, kv, d); out (rows, h, d).
absl::Status PagedAttentionForward(Float t, const void* q, const void* k_pool, const void* v_pool,
                                   const cpu::PagedRows& r, int64_t h, int64_t kv, int64_t d, void* out,
                                   cudaStream_t stream);

// k_new, v_new (rows, kv, d) into the pools at each row's (sequence, position).
absl::Status PagedKvWrite(Float t, const void* k_new, const void* v_new, const cpu::PagedRows& r, int64_t kv,
                          int64_t d, void* k_pool, void* v_pool, cudaStream_t stream);

// x (rows, h, d) rotated in place, row i by pos[i] (device pointer).
absl::Status RopeAtPositions(Float t, void* x, const int32_t* pos, int64_t rows, int64_t h, int64_t d,
                             const RopeParams& p, cudaStream_t stream);

// ids[r] = argmax of logits row r (rows, vocab); ids is a device pointer.
absl::Status ArgmaxRows(Float t, const void* logits, int64_t rows, int64_t vocab, int32_t* ids,
                        cudaStream_t stream);

// out[i, :] = x[rows[i], :] for i < n; x (·, c), rows a device pointer:
// the decode head's pick of the logit rows in one launch.
absl::Status GatherRows(Float t, const void* x, const int32_t* rows, int64_t n, int64_t c, void* out,
                        cudaStream_t stream);

}  // namespace baton::cuda
