// The shape of a Llama/Qwen2-family model and the activation-recompute
// policy: plain aggregates parsed in launcher/ from [model] and [recompute]
// and passed down by value. Validate() names the offending key.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/cpu/rope.h"

namespace baton {

struct ModelConfig {
  int layers = 4;            // transformer blocks
  int dim = 128;             // hidden size C
  int heads = 4;             // query heads H; head_dim = dim / heads
  int kv_heads = 4;          // key/value heads (GQA); 1 <= kv_heads <= heads, heads % kv_heads == 0
  int ffn_dim = 384;         // SwiGLU inner size F
  int vocab_size = 258;      // V; byte-level: 256 bytes + BOS + EOS
  double rope_theta = 10000.0;  // RoPE base
  RopeScaling rope_scaling;     // long-context rescaling of the RoPE frequencies; type kNone = off
  float norm_eps = 1e-5f;    // RMSNorm epsilon
  bool tie_embeddings = true;  // lm_head shares the embedding table
  bool qkv_bias = false;       // Qwen2: bias on q/k/v projections
  float init_std = 0.02f;      // N(0, init_std) for weights; output projections scaled by 1/sqrt(2·layers)

  int head_dim() const { return dim / heads; }
  RopeParams rope() const { return {rope_theta, rope_scaling}; }
  absl::Status Validate() const;  // names the key: "model.heads=6 does not divide model.dim=128"
};

enum class RecomputePolicy { kNone, kFull, kSelective, kEveryK };

struct RecomputeConfig {
  RecomputePolicy policy = RecomputePolicy::kNone;
  int every_k = 2;  // with kEveryK: layers l with l % every_k == 0 are fully recomputed
};

const char* RecomputePolicyName(RecomputePolicy p);

}  // namespace baton
