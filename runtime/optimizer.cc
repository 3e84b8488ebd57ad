// AdamW, gradient clipping and the LR schedule (see optimizer.h).
#include "runtime/optimizer.h"
#include "runtime/op_profile.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/cuda_allocator.h"
#include "runtime/ops.h"
#include "kernels/check.h"
#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/stream.h"
#include "runtime/ops_cuda.h"
#endif

namespace baton {

namespace {

Allocator* AllocatorFor(const Tensor& t) {
  return t.device() == Device::kCuda ? DefaultCudaAllocator() : DefaultCpuAllocator();
}

#ifdef BATON_HAVE_CUDA
// Multi-tensor AdamW over the params whose decay flag is `decay`, then the
// refresh of their compute copies.
void StepCuda(std::vector<Param>& params, std::vector<Tensor>& m, std::vector<Tensor>& v,
              const OptimizerConfig& c, int64_t step, float lr, float grad_scale) {
  for (const bool decay : {true, false}) {
    std::vector<cuda::AdamWTensor> list;
    for (size_t i = 0; i < params.size(); ++i) {
      Param& p = params[i];
      if (p.decay != decay) continue;
      BATON_CHECK_MSG(p.value.dtype() == DType::kF32 && p.grad.dtype() == DType::kF32 &&
                          p.grad.device() == Device::kCuda && m[i].device() == Device::kCuda,
                      (p.name + ": AdamW on CUDA needs f32 device params, grads and moments").c_str());
      const bool bf16_copy = p.compute.defined() && p.compute.dtype() == DType::kBF16;
      list.push_back({static_cast<float*>(p.value.raw()), static_cast<const float*>(p.grad.raw()),
                      static_cast<float*>(m[i].raw()), static_cast<float*>(v[i].raw()),
                      p.value.numel(), bf16_copy ? p.compute.raw() : nullptr});
    }
    if (list.empty()) continue;
    const cuda::AdamWHyper h{lr, c.beta1, c.beta2, c.eps, decay ? c.weight_decay : 0.0f, step, grad_scale};
    const absl::Status st =
        [&] {
          op_profile::Scope prof_scope("adamw (multi-tensor)");
          return cuda::AdamWMultiTensor(list.data(), static_cast<int>(list.size()), h, cuda::CurrentStream());
        }();
    BATON_CHECK_MSG(st.ok(), st.ToString().c_str());
  }
  for (Param& p : params) {  // bf16 copies were written by the step
    if (p.compute.defined() && p.compute.dtype() != DType::kBF16) ops::cuda_impl::Convert(p.value, p.compute);
  }
}
#endif

}  // namespace

void AdamWOptimizer::InitState(const std::vector<Param>& params) {
  m_.clear();
  v_.clear();
  for (const Param& p : params) {
    m_.push_back(Tensor::Zeros(p.value.shape(), p.value.dtype(), AllocatorFor(p.value)));
    v_.push_back(Tensor::Zeros(p.value.shape(), p.value.dtype(), AllocatorFor(p.value)));
  }
}

void AdamWOptimizer::Step(std::vector<Param>& params, float lr, float grad_scale) {
  if (m_.empty()) InitState(params);
  BATON_CHECK_MSG(m_.size() == params.size(), "optimizer state does not match the params");
  ++step_;
#ifdef BATON_HAVE_CUDA
  if (!params.empty() && params[0].value.device() == Device::kCuda) {
    return StepCuda(params, m_, v_, config_, step_, lr, grad_scale);
  }
#endif
  if (grad_scale != 1.0f) {
    for (Param& p : params) ops::Scale(p.grad, grad_scale);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const ops::AdamWParams hp{lr, config_.beta1, config_.beta2, config_.eps,
                              params[i].decay ? config_.weight_decay : 0.0f, step_};
    ops::AdamW(params[i].value, params[i].grad, m_[i], v_[i], hp);
  }
}

absl::StatusOr<double> GlobalGradNorm(const GradNormPlan& plan, float max_norm, float* scale) {
  double sum = 0;
  if (plan.flat != nullptr) {
    sum = ops::SumSquares(*plan.flat);
  } else {
    for (const Tensor* g : plan.counted) sum += ops::SumSquares(*g);
  }
  if (plan.reduce) BATON_RETURN_IF_ERROR(plan.reduce(&sum));
  const double norm = std::sqrt(sum);
  *scale = max_norm > 0 && norm > max_norm ? static_cast<float>(max_norm / norm) : 1.0f;
  return norm;
}

double ClipGradNorm(std::vector<Param>& params, float max_norm) {
  GradNormPlan plan;
  for (const Param& p : params) plan.counted.push_back(&p.grad);
  float scale = 1.0f;
  const double norm = *GlobalGradNorm(plan, max_norm, &scale);  // no reduce: cannot fail
  if (scale != 1.0f) {
    for (Param& p : params) ops::Scale(p.grad, scale);
  }
  return norm;
}

double ClipGradNorm(std::vector<Param>& params, float max_norm, const Tensor& flat_grads) {
  if (!flat_grads.defined()) return ClipGradNorm(params, max_norm);
  float scale = 1.0f;
  const double norm = GradNormFlat(flat_grads, max_norm, &scale);
  if (scale != 1.0f) {
    Tensor all = flat_grads;  // a handle: scaling it scales every grad view
    ops::Scale(all, scale);
  }
  return norm;
}

double GradNormFlat(const Tensor& flat_grads, float max_norm, float* grad_scale) {
  GradNormPlan plan;
  plan.flat = &flat_grads;
  return *GlobalGradNorm(plan, max_norm, grad_scale);
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
