// f32 <-> bf16 / f16 conversions (see convert.h). Integer bit manipulation
// only, except the f16-subnormal path, which lets the FPU do the rounding
// (IEEE addition is round-to-nearest-even; we build with no -ffast-math).
#include "kernels/cpu/convert.h"

#include <cstring>

namespace baton::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace

float Bf16ToF32(uint16_t h) { return FromBits(static_cast<uint32_t>(h) << 16); }

uint16_t F32ToBf16(float f) {
  uint32_t u = Bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    // NaN: truncating could clear every payload bit left (-> inf); force quiet.
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  // Add just under half an ulp, plus one more if the kept lsb is odd: ties go
  // to even; a carry into the exponent is the correct rounding (up to inf).
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float F16ToF32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return FromBits(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return FromBits(sign | ((exp + 112) << 23) | (mant << 13));
  // Zero or subnormal: mant · 2^-24, exact in f32.
  float mag = static_cast<float>(mant) * FromBits(0x33800000u);  // 2^-24
  return FromBits(sign | Bits(mag));
}

uint16_t F32ToF16(float f) {
  // After Giesen, "float->half variants" (float_to_half_fast3_rtne).
  uint32_t u = Bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  uint32_t out;
  if (u >= 0x47800000u) {  // |f| >= 65536, inf or NaN
    out = u > 0x7F800000u ? 0x7E00u | ((u >> 13) & 0x3FFu) : 0x7C00u;
  } else if (u < 0x38800000u) {  // |f| < 2^-14: f16 subnormal or zero
    // Adding 0.5 aligns the f16 subnormal lsb with the f32 lsb; the FPU rounds.
    const float kMagic = FromBits(0x3F000000u);  // 0.5
    out = Bits(FromBits(u) + kMagic) - 0x3F000000u;
  } else {
    uint32_t mant_odd = (u >> 13) & 1u;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu + mant_odd;  // rebias + round
    out = u >> 13;  // a carry past 0x7BFF lands exactly on inf (0x7C00)
  }
  return static_cast<uint16_t>(out | sign);
}

void Bf16ToF32(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(in[i]);
}

void F32ToBf16(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = F32ToBf16(in[i]);
}

void F16ToF32(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(in[i]);
}

void F32ToF16(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = F32ToF16(in[i]);
}

}  // namespace baton::cpu
