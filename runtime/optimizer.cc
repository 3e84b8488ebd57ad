// AdamW, gradient clipping and the LR schedule (see optimizer.h).
#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/ops.h"

namespace baton {

void AdamWOptimizer::InitState(const std::vector<Param>& params) {
  m_.clear();
  v_.clear();
  for (const Param& p : params) {
    m_.push_back(Tensor::Zeros(p.value.shape(), p.value.dtype()));
    v_.push_back(Tensor::Zeros(p.value.shape(), p.value.dtype()));
  }
}

void AdamWOptimizer::Step(std::vector<Param>& params, float lr) {
  if (m_.empty()) InitState(params);
  BATON_CHECK_MSG(m_.size() == params.size(), "optimizer state does not match the params");
  ++step_;
  for (size_t i = 0; i < params.size(); ++i) {
    const ops::AdamWParams hp{lr, config_.beta1, config_.beta2, config_.eps,
                              params[i].decay ? config_.weight_decay : 0.0f, step_};
    ops::AdamW(params[i].value, params[i].grad, m_[i], v_[i], hp);
  }
}

double ClipGradNorm(std::vector<Param>& params, float max_norm) {
  double sum = 0;
  for (const Param& p : params) sum += ops::SumSquares(p.grad);
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (Param& p : params) ops::Scale(p.grad, scale);
  }
  return norm;
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
