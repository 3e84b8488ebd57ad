// Optimizer and learning-rate schedule settings ([train] keys), plain
// aggregates passed by value from launcher/ to runtime/optimizer.
#pragma once

#include <cstdint>

namespace baton {

enum class LrDecay { kCosine, kLinear, kConstant };

struct OptimizerConfig {
  float lr = 3e-3f;            // peak learning rate
  float min_lr = 3e-4f;        // floor reached at the last step
  int64_t warmup_steps = 20;   // linear warmup from 0; 0 = off
  LrDecay decay = LrDecay::kCosine;
  float weight_decay = 0.1f;   // decoupled; never applied to norms (or biases)
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float grad_clip = 1.0f;      // global L2 norm; 0 = off
};

}  // namespace baton
