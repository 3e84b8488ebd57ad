// The offline distillation loss on the GPU, with the contract of the CPU
// reference (kernels/cpu/distill_topk.h: the (k + 1)-outcome teacher, the
// (n) max, (4 + k, n) sums and (3, n) losses layouts, ignored rows). The
// student's logits are f32 or bf16 (`t`), a vocabulary shard
// [vocab_start, vocab_start + v); the teacher's top-k values and rest_lse
// are f32, its ids i32, distinct and in the vocabulary (checked on the host
// where they are uploaded: runtime/distill_offline_upload.h). Statistics and
// all math are f32. One block per row; a row's kept ids are marked in a
// shared-memory bitmap of v bits, so v is at most kOfflineMaxShard. The
// caller (runtime/distill_offline.cc) reduces max and sums over the tp group
// between the passes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

// The largest vocabulary shard the bitmap marks: a launch may take 48 KiB of
// shared memory unasked, static included (the kernels' 32-float scratch).
inline constexpr int64_t kOfflineMaxShard = (int64_t{48} * 1024 - 32 * 4) * 8;

// max (n): max s.
absl::Status OfflineRowMax(Float t, const void* student, int64_t n, int64_t v, float* max, cudaStream_t stream);
// sums (4 + k, n): Σexp(s/T − ms), the same over ids not kept, Σexp(s − m1),
// s[target], then s at each kept id (0 where it is in another shard).
absl::Status OfflineRowSums(Float t, const void* student, const int32_t* indices, const int32_t* targets,
                            int64_t vocab_start, int64_t n, int64_t v, int64_t k, float temperature,
                            const float* max, float* sums, cudaStream_t stream);
// losses (3, n): total, KL, CE per row; norm (2, n): the teacher's
// log-normaliser L and rest mass p_rest per row, which OfflineBackward reads.
absl::Status OfflineRowLoss(const float* values, const float* rest_lse, const int32_t* targets, int64_t n,
                            int64_t k, const float* max, const float* sums, float alpha, float temperature,
                            float* losses, float* norm, cudaStream_t stream);
// dstudent (n, v) in `t` = grad_scale·dloss/dstudent, 0 on ignored rows; may alias student.
absl::Status OfflineBackward(Float t, const void* student, const float* values, const int32_t* indices,
                             const int32_t* targets, int64_t vocab_start, int64_t n, int64_t v, int64_t k,
                             const float* max, const float* sums, const float* norm, float alpha, float temperature,
                             float grad_scale, void* dstudent, cudaStream_t stream);

}  // namespace baton::cuda
