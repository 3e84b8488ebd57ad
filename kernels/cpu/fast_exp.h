// exp for the CPU kernels' inner loops. glibc's expf is a function call the
// compiler cannot vectorise (without -ffast-math, which we do not use), and
// it dominated softmax, cross-entropy and SwiGLU. ExpF32 is branch-free
// (Cephes expf: range reduction by ln 2 and a degree-6 polynomial, < 2 ulp
// on [-87, 88]), so `#pragma omp simd` loops over it vectorise. Inputs are
// clamped to [-87.3, 88]: results saturate at ~1e-38 and ~1.7e38 instead
// of 0 and inf; NaN stays NaN. Exp<double> is std::exp (f64 is for tests).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace baton::cpu {

inline float ExpF32(float x) {
  // Clamp to [-87.33654, 88] on the bit pattern: integer min/max vectorise
  // where float ternaries get jump-threaded into branches. Negative floats
  // order reversed as ints. 2^-126 is the smallest normal; 88 keeps n <= 127.
  const int32_t xi = std::bit_cast<int32_t>(x);
  const int32_t lo = static_cast<int32_t>(0xC2AEAC4Fu), hi = 0x42B00000;
  const int32_t ci = xi < 0 ? (xi < lo ? xi : lo) : (xi < hi ? xi : hi);
  const float xc = std::bit_cast<float>(ci);
  // n = round(x / ln2) by the 1.5·2^23 trick; its integer sits in the low bits.
  const float shifted = xc * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  // r = x − n·ln2 in two parts (Cody-Waite), |r| <= ln2/2.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t pow2 = (std::bit_cast<int32_t>(shifted) - 0x4B400000 + 127) << 23;  // 2^n
  const int32_t result = std::bit_cast<int32_t>(y * std::bit_cast<float>(pow2));
  // NaN in, NaN out; selected with a mask, since a ternary would branch.
  const int32_t nan_mask = -static_cast<int32_t>((xi & 0x7FFFFFFF) > 0x7F800000);
  return std::bit_cast<float>((xi & nan_mask) | (result & ~nan_mask));
}

template <typename T>
inline T Exp(T x);
template <>
inline float Exp<float>(float x) {
  return ExpF32(x);
}
template <>
inline double Exp<double>(double x) {
  return std::exp(x);
}

}  // namespace baton::cpu
