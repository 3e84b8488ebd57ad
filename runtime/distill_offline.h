// Offline distillation as the trainer calls it: the teacher's top-k logits per
// token (stored once by `baton distill --dump-teacher`, see
// checkpoints/teacher_logits.h) stand in for its full logits. TeacherTopKOf
// makes them from full logits; OfflineDistillLoss is DistillLoss
// (runtime/distill_loss.h: same options, sums, scaling and in-place gradient)
// against them, with the KL taken over the k kept ids plus one "rest" outcome
// (kernels/cpu/distill_topk.h has the formulas and the bound: never above the
// online KL, equal at k = V). CPU: f32/f64, statistics in the logits' dtype;
// CUDA: f32/bf16 logits, the teacher's rows f32 on the device
// (TeacherTopKUpload in distill_offline_upload.h puts them there), f32
// statistics, on the current stream. Under tensor parallelism the student's
// logits are a vocabulary shard and the top-k is whole on every rank; only
// per-row numbers cross the tp group (one max, then 4 + k sums: the student's
// logits at the kept ids among them).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "runtime/distill_loss.h"
#include "runtime/tensor.h"

namespace baton {

struct TeacherTopK {
  Tensor values;             // (N, k) the k largest teacher logits, descending; the student's dtype
  Tensor indices;            // (N, k) i32 their vocabulary ids
  Tensor rest_lse;           // (N) log Σ exp(logit/T) over the other ids (−inf when k = V)
  double temperature = 1.0;  // the T rest_lse was taken at; the loss must use the same
};

// From full teacher logits (N, V) (CPU f32/f64); 1 <= k <= V, T > 0.
absl::StatusOr<TeacherTopK> TeacherTopKOf(const Tensor& teacher_logits, int64_t k, double temperature);

// student (N, V_local) CPU f32/f64 or CUDA f32/bf16, holding ids [vocab_start, vocab_start +
// V_local) (the whole vocabulary V without tp, else V = V_local·tp size);
// on the CPU the teacher of the same dtype and N, on CUDA f32 on the device;
// targets (N) i32 on the logits' device, in [0, V) or < 0 (ignored).
// InvalidArgument when options.temperature differs from
// teacher.temperature, for mismatched shapes, dtypes or devices, or (CPU:
// here; CUDA: at upload) for ids out of [0, V) or repeated in a row (naming
// the row); a failed collective's status.
absl::StatusOr<DistillLossSums> OfflineDistillLoss(const Tensor& student, const TeacherTopK& teacher,
                                                   const Tensor& targets, const DistillLossOptions& options,
                                                   double grad_scale, Tensor* dstudent, TpCollectives* tp = nullptr,
                                                   int64_t vocab_start = 0);

// InvalidArgument naming the first row of (CPU) teacher.indices with an id
// outside [0, vocab) or twice.
absl::Status CheckTeacherTopKIds(const TeacherTopK& teacher, int64_t vocab);

}  // namespace baton
