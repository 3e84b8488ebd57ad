// The knowledge-distillation loss as the trainer calls it on the last
// pipeline stage, in place of the cross-entropy: student and teacher logits
// of one micro-batch in, the summed loss and the student's logit gradient
// out. Per token (kernels/cpu/distill_loss.h has the formulas):
//   alpha·T²·KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − alpha)·CE(student, target)
// Averaged like the training loss: the call returns SUMS over the rows, and
// the gradient is grad_scale·d(sum)/d student, so the trainer passes
// grad_scale = 1 / tokens in the global batch and divides the sum by the
// same count (as for Model::ForwardBackward). A target < 0 ignores its row.
// Under tensor parallelism both logit tensors are vocab-parallel (N, V/tp)
// shards of the same ids; only per-row numbers cross the tp group (3 maxes,
// then 5 sums, as in the vocab-parallel cross-entropy), and every tp rank
// returns the same sums. CPU: f32/f64 logits, statistics in their dtype;
// CUDA: f32/bf16 logits, f32 statistics and math, on the current stream.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "runtime/tensor.h"
#include "runtime/tensor_parallel.h"

namespace baton {

struct DistillLossOptions {
  double alpha = 0.5;        // weight of the KL term, in [0, 1]; 0 = plain cross-entropy
  double temperature = 1.0;  // divides both logits inside the KL; > 0; 1 = off
};

// Sums over the rows whose target is >= 0 (every tp rank gets the same).
struct DistillLossSums {
  double loss = 0;  // Σ alpha·T²·KL + (1 − alpha)·CE: what the trainer reports and differentiates
  double kl = 0;    // Σ KL, unscaled
  double ce = 0;    // Σ CE
};

// student, teacher (N, V_local) of one dtype and device (V_local = the whole
// vocabulary without tp); targets (N) i32 on the same device. vocab_start:
// the first id this shard holds (0 without tp). tp: the group the
// vocabulary is split over; null (or size 1) = all of it here.
// dstudent: null for the loss alone, else (N, V_local) like student,
// overwritten with grad_scale·d(loss sum)/d student; it may alias student
// (the model keeps its dlogits in place of the logits). The teacher gets no
// gradient. Errors: InvalidArgument for mismatched shapes, dtypes or
// options; a failed tp collective's status.
absl::StatusOr<DistillLossSums> DistillLoss(const Tensor& student, const Tensor& teacher, const Tensor& targets,
                                            const DistillLossOptions& options, double grad_scale, Tensor* dstudent,
                                            TpCollectives* tp = nullptr, int64_t vocab_start = 0);

}  // namespace baton
