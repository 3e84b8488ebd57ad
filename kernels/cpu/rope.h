// Rotary position embedding on the CPU, HF "rotate_half" layout: in a head
// of dimension D, element i (< D/2) pairs with i + D/2 and both rotate by
// angle = t · inv_freq[i] for position t, inv_freq[i] = theta^(-2i/D) then
// rescaled per RopeScaling (HF's "linear" and "llama3" rope types). Angles
// are computed in double and rounded to T once, so f32 and f64 differ only
// by that rounding. The backward is the same rotation by −angle (inverse).
// RopeInverseFrequency is host+device code: the CUDA kernel
// (kernels/cuda/rope.cu) calls the very same function, so the frequency
// table cannot drift between backends.
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define BATON_HOST_DEVICE __host__ __device__
#else
#define BATON_HOST_DEVICE
#endif

namespace baton {

// How the inverse frequencies are rescaled for long contexts; mirrors
// transformers' modeling_rope_utils.py. kNone is HF's "default".
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;            // kLinear, kLlama3: context extension factor (> 0; Llama 3.1: 8)
  double low_freq_factor = 1.0;   // kLlama3: wavelengths above original_max / this are divided by factor
  double high_freq_factor = 4.0;  // kLlama3: wavelengths below original_max / this are unchanged
  int64_t original_max_position = 8192;  // kLlama3: pretraining context length, in tokens
};

struct RopeParams {
  double theta = 10000.0;  // base of the frequencies
  RopeScaling scaling;     // default: none
};

// inv_freq[i] for pair i of a head of dimension d (0 <= i < d/2), in double.
// linear: HF scales positions t/factor, i.e. inv_freq/factor.
// llama3: HF _compute_llama3_parameters (Llama 3.1): with
// wavelen = 2π/inv_freq, keep it below original_max/high_freq_factor,
// divide by factor above original_max/low_freq_factor, and in between blend
// (1-s)·inv_freq/factor + s·inv_freq, s = (original_max/wavelen - low)/(high - low).
BATON_HOST_DEVICE inline double RopeInverseFrequency(const RopeParams& p, int64_t i, int64_t d) {
  const double inv_freq = ::pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
  const RopeScaling& s = p.scaling;
  switch (s.type) {
    case RopeScaling::Type::kNone: return inv_freq;
    case RopeScaling::Type::kLinear: return inv_freq / s.factor;
    case RopeScaling::Type::kLlama3: {
      const double old_context = static_cast<double>(s.original_max_position);
      const double wavelen = 2.0 * 3.141592653589793 / inv_freq;
      if (wavelen < old_context / s.high_freq_factor) return inv_freq;
      if (wavelen > old_context / s.low_freq_factor) return inv_freq / s.factor;
      const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      return (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq;
    }
  }
  return inv_freq;
}

// "none", "linear", "llama3": the spelling of model.rope_scaling.
const char* RopeScalingName(RopeScaling::Type t);

}  // namespace baton

namespace baton::cpu {

// x (b, t, h, d) rotated in place; d even.
template <typename T>
void RopeRotate(T* x, int64_t b, int64_t t, int64_t h, int64_t d, const RopeParams& p, bool inverse);

}  // namespace baton::cpu
