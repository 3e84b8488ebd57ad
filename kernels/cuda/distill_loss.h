// The distillation loss pieces on the GPU, with the contract of the CPU
// reference (kernels/cpu/distill_loss.h: formulas, the (3, n) max, (5, n)
// sum and (3, n) loss layouts, ignored rows). Logits are f32 or bf16 (`t`),
// read in place; statistics, losses and all math are f32. One block per
// row for the three row passes; the caller (runtime/distill_loss.cc)
// reduces the statistics over the tp group between them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

// max (3, n): max s/T, max t/T, max s.
absl::Status DistillRowMax(Float t, const void* student, const void* teacher, int64_t n, int64_t v,
                           float temperature, float* max, cudaStream_t stream);
// sums (5, n): Σexp(s/T − ms), Σexp(t/T − mt), Σexp(s − m1), Σexp(t/T − mt)(t − s)/T, s[target].
absl::Status DistillRowSums(Float t, const void* student, const void* teacher, const int32_t* targets,
                            int64_t vocab_start, int64_t n, int64_t v, float temperature, const float* max,
                            float* sums, cudaStream_t stream);
// losses (3, n): total, KL, CE per row; 0 on ignored rows.
absl::Status DistillRowLoss(const int32_t* targets, int64_t n, const float* max, const float* sums, float alpha,
                            float temperature, float* losses, cudaStream_t stream);
// dstudent (n, v) in `t` = grad_scale·dloss/dstudent, 0 on ignored rows; may alias student.
absl::Status DistillBackward(Float t, const void* student, const void* teacher, const int32_t* targets,
                             int64_t vocab_start, int64_t n, int64_t v, const float* max, const float* sums,
                             float alpha, float temperature, float grad_scale, void* dstudent, cudaStream_t stream);

}  // namespace baton::cuda
