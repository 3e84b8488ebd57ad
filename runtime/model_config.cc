// ModelConfig validation (see model_config.h).
#include "runtime/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace baton {

absl::Status ModelConfig::Validate() const {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (layers < 1) return bad("model.layers=", layers, " must be >= 1");
  if (dim < 1) return bad("model.dim=", dim, " must be >= 1");
  if (heads < 1) return bad("model.heads=", heads, " must be >= 1");
  if (dim % heads != 0) return bad("model.heads=", heads, " does not divide model.dim=", dim);
  if (head_dim() % 2 != 0) return bad("model.dim/model.heads=", head_dim(), " must be even for RoPE");
  if (kv_heads < 1 || kv_heads > heads || heads % kv_heads != 0)
    return bad("model.kv_heads=", kv_heads, " must divide model.heads=", heads);
  if (ffn_dim < 1) return bad("model.ffn_dim=", ffn_dim, " must be >= 1");
  if (vocab_size < 2) return bad("model.vocab_size=", vocab_size, " must be >= 2");
  if (!(rope_theta > 0)) return bad("model.rope_theta=", rope_theta, " must be > 0");
  if (rope_scaling.type != RopeScaling::Type::kNone && !(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor)))
    return bad("model.rope_scaling_factor=", rope_scaling.factor, " must be > 0 with model.rope_scaling=",
               RopeScalingName(rope_scaling.type));
  if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    const RopeScaling& s = rope_scaling;
    if (!(s.low_freq_factor > 0)) return bad("model.rope_low_freq_factor=", s.low_freq_factor, " must be > 0");
    if (!(s.high_freq_factor > s.low_freq_factor && std::isfinite(s.high_freq_factor)))
      return bad("model.rope_high_freq_factor=", s.high_freq_factor, " must be > model.rope_low_freq_factor=",
                 s.low_freq_factor);
    if (s.original_max_position < 1)
      return bad("model.rope_original_max_position=", s.original_max_position, " must be >= 1");
  }
  if (!(norm_eps > 0)) return bad("model.norm_eps=", norm_eps, " must be > 0");
  if (!(init_std > 0)) return bad("model.init_std=", init_std, " must be > 0");
  return absl::OkStatus();
}

const char* RecomputePolicyName(RecomputePolicy p) {
  switch (p) {
    case RecomputePolicy::kNone: return "none";
    case RecomputePolicy::kFull: return "full";
    case RecomputePolicy::kSelective: return "selective";
    case RecomputePolicy::kEveryK: return "every_k";
  }
  return "?";
}

}  // namespace baton
