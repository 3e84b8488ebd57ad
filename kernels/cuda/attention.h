// Causal grouped-query attention on the GPU (reference:
// kernels/cpu/attention.h), scale 1/sqrt(d). q, out, dout, dq (b, t, h, d);
// k, v, dk, dv (b, t, kv, d) in `t_el`; lse (b, h, t) f32. Query head hh
// reads kv head hh / (h / kv).
// bf16 with d ∈ {64, 128} (16-byte aligned pointers) runs FlashAttention-2
// on tensor cores (kernels/cuda/flash_attention.cuh): deterministic, no
// atomics; backward takes a b·h·t f32 scratch from the stream's pool.
// bf16 may instead run cuDNN's fused attention (AttentionBackend below). f32
// and other head dims (d ≤ 256) run the plain kernels here: one warp per
// query row (forward: online softmax, saves lse; backward dq: P recomputed
// from lse) and one warp per key row for dk/dv (summing over the query heads
// of its group, deterministic).
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
// Whether these dims and dtype take the FlashAttention-2 path (pointers
// aside); for tests and benchmarks.
bool AttentionUsesFlash(Float t_el, const AttentionDims& dims);
// Builds ahead of time whatever the calls with these dims will compile on
// first use (cuDNN plans where AttentionUsesCudnn says so) on device
// `device`; callable from another thread while that one does host work.
absl::Status PrepareAttention(Float t_el, const AttentionDims& dims, int device);

// Which bf16 implementation runs (process-wide). kAuto: cuDNN's fused
// attention where AttentionUsesCudnn's rule says it is faster, falling back
// to FlashAttention-2 when cuDNN has no plan for the shape; kFlash: never
// cuDNN; kCudnn: cuDNN for every bf16 call, its errors returned instead of
// falling back (tests and benchmarks).
enum class AttentionBackend { kAuto, kFlash, kCudnn };
void SetAttentionBackend(AttentionBackend backend);
AttentionBackend GetAttentionBackend();
// Whether a call with these dims asks cuDNN first (cudnn_attention.h).
// The kAuto rule is static, not timed, so that every process of a run and
// its resume take the same kernels and give the same bits.
bool AttentionUsesCudnn(Float t_el, const AttentionDims& dims, bool backward);

}  // namespace baton::cuda
