// AdamW, gradient clipping and the LR schedule (see optimizer.h).
#include "runtime/optimizer.h"
#include "runtime/op_profile.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/cuda_allocator.h"
#include "runtime/ops.h"

namespace baton {

namespace {

Allocator* AllocatorFor(const Tensor& t) {
  return t.device() == Device::kCuda ? DefaultCudaAllocator() : DefaultCpuAllocator();
}

// One AdamW pass over the params whose decay flag is `decay` (one
// multi-tensor launch per chunk on CUDA); bf16 compute copies are written in
// the same pass.
absl::Status StepGroup(std::vector<Param>& params, std::vector<Tensor>& m, std::vector<Tensor>& v,
                       const OptimizerConfig& c, int64_t step, float lr, float grad_scale, bool decay,
                       std::vector<ops::AdamWTensors>& list) {
  list.clear();
  for (size_t i = 0; i < params.size(); ++i) {
    Param& p = params[i];
    if (p.decay != decay) continue;
    const bool bf16_copy = p.compute.defined() && p.compute.dtype() == DType::kBF16;
    list.push_back({&p.value, &p.grad, &m[i], &v[i], bf16_copy ? &p.compute : nullptr});
  }
  const ops::AdamWParams hp{lr, c.beta1, c.beta2, c.eps, decay ? c.weight_decay : 0.0f, step, grad_scale};
  return ops::AdamW(list, hp);
}

}  // namespace

void AdamWOptimizer::InitState(const std::vector<Param>& params) {
  m_.clear();
  v_.clear();
  for (const Param& p : params) {
    m_.push_back(Tensor::Zeros(p.value.shape(), p.value.dtype(), AllocatorFor(p.value)));
    v_.push_back(Tensor::Zeros(p.value.shape(), p.value.dtype(), AllocatorFor(p.value)));
  }
}

absl::Status AdamWOptimizer::Step(std::vector<Param>& params, float lr, float grad_scale) {
  if (m_.empty()) InitState(params);
  BATON_CHECK_MSG(m_.size() == params.size(), "optimizer state does not match the params");
  ++step_;
  std::vector<ops::AdamWTensors> list;
  for (const bool decay : {true, false}) {
    BATON_RETURN_IF_ERROR(StepGroup(params, m_, v_, config_, step_, lr, grad_scale, decay, list));
  }
  for (Param& p : params) {  // bf16 copies were written by the step
    if (p.compute.defined() && p.compute.dtype() != DType::kBF16) BATON_RETURN_IF_ERROR(ops::Convert(p.value, p.compute));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> GlobalGradNorm(const GradNormPlan& plan, float max_norm, float* scale) {
  double sum = 0;
  if (plan.flat != nullptr) {
    BATON_ASSIGN_OR_RETURN(sum, ops::SumSquares(*plan.flat));
  } else {
    for (const Tensor* g : plan.counted) {
      BATON_ASSIGN_OR_RETURN(const double s, ops::SumSquares(*g));
      sum += s;
    }
  }
  if (plan.reduce) BATON_RETURN_IF_ERROR(plan.reduce(&sum));
  const double norm = std::sqrt(sum);
  *scale = max_norm > 0 && norm > max_norm ? static_cast<float>(max_norm / norm) : 1.0f;
  return norm;
}

absl::StatusOr<double> ClipGradNorm(std::vector<Param>& params, float max_norm) {
  GradNormPlan plan;
  for (const Param& p : params) plan.counted.push_back(&p.grad);
  float scale = 1.0f;
  BATON_ASSIGN_OR_RETURN(const double norm, GlobalGradNorm(plan, max_norm, &scale));
  if (scale != 1.0f) {
    for (Param& p : params) BATON_RETURN_IF_ERROR(ops::Scale(p.grad, scale));
  }
  return norm;
}

absl::StatusOr<double> ClipGradNorm(std::vector<Param>& params, float max_norm, const Tensor& flat_grads) {
  if (!flat_grads.defined()) return ClipGradNorm(params, max_norm);
  float scale = 1.0f;
  BATON_ASSIGN_OR_RETURN(const double norm, GradNormFlat(flat_grads, max_norm, &scale));
  if (scale != 1.0f) {
    Tensor all = flat_grads;  // a handle: scaling it scales every grad view
    BATON_RETURN_IF_ERROR(ops::Scale(all, scale));
  }
  return norm;
}

absl::StatusOr<double> GradNormFlat(const Tensor& flat_grads, float max_norm, float* grad_scale) {
  GradNormPlan plan;
  plan.flat = &flat_grads;
  return GlobalGradNorm(plan, max_norm, grad_scale);
}

float LearningRate(const OptimizerConfig& c, int64_t step, int64_t total_steps) {
  if (step < c.warmup_steps) {
    return c.lr * static_cast<float>(step + 1) / static_cast<float>(c.warmup_steps);
  }
  if (c.decay == LrDecay::kConstant) return c.lr;
  const int64_t span = total_steps - 1 - c.warmup_steps;
  const double progress =
      span <= 0 ? 1.0 : std::clamp(static_cast<double>(step - c.warmup_steps) / span, 0.0, 1.0);
  const double coeff = c.decay == LrDecay::kCosine
                           ? 0.5 * (1.0 + std::cos(std::numbers::pi * progress))  // 1 → 0
                           : 1.0 - progress;
  return static_cast<float>(c.min_lr + coeff * (c.lr - c.min_lr));
}

}  // namespace baton
