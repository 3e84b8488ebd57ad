// Causal grouped-query attention on the GPU (reference:
// kernels/cpu/attention.h), scale 1/sqrt(d). q, out, dout, dq (b, t, h, d);
// k, v, dk, dv (b, t, kv, d) in `t_el`; lse (b, h, t) f32. Query head hh
// reads kv head hh / (h / kv).
// This first version is plain and correct, not fast: one warp per query row
// (forward: online softmax, saves lse; backward dq: P recomputed from lse)
// and one warp per key row for dk/dv (summing over the query heads of its
// group, no atomics, deterministic). d ≤ 256. FlashAttention-2 tiling with
// tensor cores comes next (issue 6).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

struct AttentionDims {
  int64_t b, t, h, kv, d;
};

absl::Status AttentionForward(Float t_el, const void* q, const void* k, const void* v,
                              const AttentionDims& dims, void* out, float* lse,
                              cudaStream_t stream);
absl::Status AttentionBackward(Float t_el, const void* dout, const void* q, const void* k,
                               const void* v, const void* out, const float* lse,
                               const AttentionDims& dims, void* dq, void* dk, void* dv,
                               cudaStream_t stream);

}  // namespace baton::cuda
