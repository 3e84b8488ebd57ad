// AdamW over a model's Params, global-norm gradient clipping and the
// learning-rate schedule. The trainer calls, per step: ClipGradNorm, then
// LearningRate(step), then Step. The moments m, v are per-parameter
// tensors in the order of the params vector, exposed (with the step count)
// so checkpoints can save and restore them bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/optimizer_config.h"
#include "runtime/param.h"
#include "runtime/tensor.h"

namespace baton {

class AdamWOptimizer {
 public:
  explicit AdamWOptimizer(const OptimizerConfig& config) : config_(config) {}

  // Allocates zero moments for `params` (Step does it on first use). A
  // checkpoint load calls this, then fills m(i), v(i) and set_step.
  void InitState(const std::vector<Param>& params);
  // One update of every param with lr; weight decay only where Param.decay.
  // Increments step() first, so the first update uses bias correction at 1.
  // On CUDA: two multi-tensor launches (decay and no-decay) that also write
  // each bf16 Param.compute from the new value (other compute dtypes are
  // converted after); no host sync. grad_scale multiplies every gradient
  // first (the clip coefficient of GradNormFlat), inside the same pass on
  // CUDA: the same bits as scaling the grads before the step.
  // An op's error (a CUDA failure, a param not on one device) is returned.
  absl::Status Step(std::vector<Param>& params, float lr, float grad_scale = 1.0f);

  int64_t step() const { return step_; }  // updates done so far
  void set_step(int64_t step) { step_ = step; }
  size_t num_states() const { return m_.size(); }
  Tensor& m(size_t i) { return m_[i]; }  // first moment of params[i]
  Tensor& v(size_t i) { return v_[i]; }  // second moment of params[i]
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  int64_t step_ = 0;
  std::vector<Tensor> m_, v_;
};

// The gradient norm, written once for every caller: a single process, one
// GPU (flat grads) and a rank of a dp x pp x tp mesh, whose share of the
// logical gradient is summed over the ranks holding the other shares.
struct GradNormPlan {
  // The grads this rank counts, summed in double in this order (so the
  // same grads give the same bits): in a mesh a tensor replicated over tp
  // is counted by one tp rank, a tied embedding copy by none.
  std::vector<const Tensor*> counted;
  // Instead: every grad as one vector (zero wherever it is not a grad;
  // Model::flat_grads() on CUDA): one reduction, one sync.
  const Tensor* flat = nullptr;
  // Sums the local sum of squares over the ranks that hold the rest of the
  // gradient (tp, then pp). Null: this process holds all of it.
  std::function<absl::Status(double* sum_of_squares)> reduce;
};
// Global L2 norm before clipping, and in *scale the clip coefficient:
// max_norm / norm (as a float) when max_norm > 0 and norm > max_norm, else
// 1. The caller scales the grads by it, or hands it to AdamWOptimizer::Step.
absl::StatusOr<double> GlobalGradNorm(const GradNormPlan& plan, float max_norm, float* scale);

// One process: the norm of every grad in params order; above max_norm every
// grad is scaled by the coefficient. Returns the norm before clipping. On
// CUDA each SumSquares syncs the stream: prefer the flat form there.
absl::StatusOr<double> ClipGradNorm(std::vector<Param>& params, float max_norm);
// The same with every grad read as one vector, flat_grads (see
// GradNormPlan::flat); the norm equals the per-param one up to summation order.
absl::StatusOr<double> ClipGradNorm(std::vector<Param>& params, float max_norm, const Tensor& flat_grads);
// The norm of flat_grads and the clip coefficient without touching the
// grads: pass it to Step.
absl::StatusOr<double> GradNormFlat(const Tensor& flat_grads, float max_norm, float* grad_scale);

// Learning rate for 0-based `step` of `total_steps`: linear warmup
// lr·(step+1)/warmup_steps for step < warmup_steps, then decay from lr to
// min_lr, reached at step total_steps-1 (cosine or linear), or lr throughout
// (kConstant, after warmup).
float LearningRate(const OptimizerConfig& config, int64_t step, int64_t total_steps);

}  // namespace baton
