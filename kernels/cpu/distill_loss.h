// Knowledge-distillation loss on the CPU (the reference the CUDA kernels in
// kernels/cuda/distill_loss.h are checked against). Per row, with student
// logits s, teacher logits t, temperature T and target y:
//   loss = alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha)·CE(s, y)
//   KL   = Σ p_j (t_j − s_j)/T − lse(t/T) + lse(s/T),  p = softmax(t/T)
//   dloss/ds_j = alpha·T·(q_j − p_j) + (1 − alpha)·(softmax(s)_j − [j = y]),  q = softmax(s/T)
// The row is split in three passes so that a vocab-parallel caller reduces
// only per-row numbers over its tp group between them (as the vocab-parallel
// cross-entropy does): DistillRowMax (3 maxes, reduce by max), DistillRowSums
// (5 sums, reduce by sum), then DistillRowLoss / DistillBackward from the
// reduced statistics. Rows whose target is < 0 are ignored: loss 0, grad 0.
// Math in double whatever T is; statistics are stored in T. With alpha = 0
// the loss and gradient are bit-identical to the vocab-parallel
// cross-entropy of runtime/ops.h (same operations in the same order).
#pragma once

#include <cstdint>

namespace baton::cpu {

// Rows of the (kDistillMaxes, n) max array.
enum DistillMaxRow : int { kMaxStudentT = 0, kMaxTeacherT = 1, kMaxStudent = 2, kDistillMaxes = 3 };
// Rows of the (kDistillSums, n) sum array.
enum DistillSumRow : int {
  kSumStudentT = 0,   // Σ exp(s/T − max s/T)
  kSumTeacherT = 1,   // Σ exp(t/T − max t/T)
  kSumStudent = 2,    // Σ exp(s − max s)              (cross-entropy)
  kSumTeacherDiff = 3,  // Σ exp(t/T − max t/T)·(t − s)/T
  kSumTarget = 4,     // s[y] where y is in this shard, else 0
  kDistillSums = 5,
};
// Rows of the (kDistillLosses, n) per-row output.
enum DistillLossRow : int { kLossTotal = 0, kLossKl = 1, kLossCe = 2, kDistillLosses = 3 };

struct DistillCoeffs {
  double alpha;        // weight of the KL term, [0, 1]
  double temperature;  // > 0
};

// student, teacher (n, v) hold vocabulary ids [vocab_start, vocab_start + v).
// max (3, n).
template <typename T>
void DistillRowMax(const T* student, const T* teacher, int64_t n, int64_t v, double temperature, T* max);
// sums (5, n) from the (reduced) max; targets (n).
template <typename T>
void DistillRowSums(const T* student, const T* teacher, const int32_t* targets, int64_t vocab_start, int64_t n,
                    int64_t v, double temperature, const T* max, T* sums);
// losses (3, n): total, KL, CE per row from the (reduced) statistics.
template <typename T>
void DistillRowLoss(const int32_t* targets, int64_t n, const T* max, const T* sums, DistillCoeffs c, T* losses);
// dstudent (n, v) = grad_scale · dloss/dstudent; may alias student.
template <typename T>
void DistillBackward(const T* student, const T* teacher, const int32_t* targets, int64_t vocab_start, int64_t n,
                     int64_t v, const T* max, const T* sums, DistillCoeffs c, double grad_scale, T* dstudent);

}  // namespace baton::cpu
