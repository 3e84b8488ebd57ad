// Tests of the f32 <-> bf16 / f16 conversions (kernels/cpu/convert.h)
// against independent references: widening is checked on hand-picked bit
// patterns, narrowing against a brute-force "nearest representable value,
// ties to even" search in double over every 16-bit value's neighbourhood.
#include "kernels/cpu/convert.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include <gtest/gtest.h>

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

// The reference narrowing: the candidate (h, next) nearest to x in exact
// (double) arithmetic, ties to the even mantissa. Works for finite x whose
// truncation toward zero is h.
uint16_t NearestEven(double x, uint16_t lo, uint16_t hi, float (*widen)(uint16_t)) {
  double dlo = std::fabs(x - static_cast<double>(widen(lo)));
  double dhi = std::fabs(x - static_cast<double>(widen(hi)));
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1) == 0 ? lo : hi;
}

// ---- bf16

TEST(ConvertTest, Bf16SpecialValues) {
  EXPECT_EQ(F32ToBf16(0.0f), 0x0000);
  EXPECT_EQ(F32ToBf16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToBf16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBf16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(F32ToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  // Ties: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1.0).
  EXPECT_EQ(F32ToBf16(FromBits(0x3F808000u)), 0x3F80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> up.
  EXPECT_EQ(F32ToBf16(FromBits(0x3F818000u)), 0x3F82);
  EXPECT_EQ(F32ToBf16(FromBits(0x3F808001u)), 0x3F81);  // just past the tie
  // f32 subnormals survive as bf16 subnormals (no flush to zero).
  EXPECT_EQ(F32ToBf16(FromBits(0x00010000u)), 0x0001);
  EXPECT_EQ(F32ToBf16(FromBits(0x00008000u)), 0x0000);  // tie -> even 0
  // NaNs stay NaN, keep their sign, even when the payload sits in low bits.
  uint16_t nan_low = F32ToBf16(FromBits(0x7F800001u));
  EXPECT_TRUE(std::isnan(Bf16ToF32(nan_low)));
  uint16_t nan_neg = F32ToBf16(FromBits(0xFFC00000u));
  EXPECT_EQ(nan_neg, 0xFFC0);
  EXPECT_EQ(Bits(Bf16ToF32(0x8000)), 0x80000000u);
  EXPECT_EQ(Bf16ToF32(0x3F80), 1.0f);
  EXPECT_EQ(Bits(Bf16ToF32(0x7FC1)), 0x7FC10000u);  // payload preserved on widening
}

TEST(ConvertTest, Bf16RoundTripIsExactForEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = Bf16ToF32(static_cast<uint16_t>(h));
    uint16_t back = F32ToBf16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(back))) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;
    } else {
      ASSERT_EQ(back, h) << "bf16 0x" << std::hex << h;
    }
  }
}

TEST(ConvertTest, Bf16NarrowingMatchesNearestEvenAroundEveryMidpoint) {
  // Between consecutive finite bf16 values h and h+1 (same sign), test the
  // exact midpoint and the f32 values one ulp either side.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7FFF) >= 0x7F7F) continue;  // h+1 would be inf or NaN
    float lo = Bf16ToF32(static_cast<uint16_t>(h));
    uint32_t mid = (Bits(lo) | 0x8000u);  // halfway to the next bf16 (by magnitude)
    for (uint32_t probe : {mid - 1, mid, mid + 1}) {
      float x = FromBits(probe);
      uint16_t want = NearestEven(x, static_cast<uint16_t>(h), static_cast<uint16_t>(h + 1), Bf16ToF32);
      ASSERT_EQ(F32ToBf16(x), want) << "x bits 0x" << std::hex << probe;
    }
  }
}

// ---- f16

TEST(ConvertTest, F16SpecialValues) {
  EXPECT_EQ(F32ToF16(0.0f), 0x0000);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);   // largest finite
  EXPECT_EQ(F32ToF16(65519.996f), 0x7BFF);  // just below the tie to inf
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);    // tie -> even, which is inf
  EXPECT_EQ(F32ToF16(1e10f), 0x7C00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xFC00);
  // Subnormals: smallest 2^-24, largest (1023)·2^-24, smallest normal 2^-14.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(1023.0f, -24)), 0x03FF);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);   // tie -> even 0
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);   // tie 1.5 -> 2
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -26)), 0x8000);  // underflow keeps sign
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001);   // past the tie: up
  // Ties in the normal range: 1 + 2^-11 -> 1; 1 + 3·2^-11 -> 1 + 2^-9.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(3.0f, -11)), 0x3C02);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x83FF), -std::ldexp(1023.0f, -24));
  EXPECT_EQ(Bits(F16ToF32(0x8000)), 0x80000000u);
  EXPECT_EQ(F16ToF32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F16ToF32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isnan(F16ToF32(0x7C01)));
  EXPECT_EQ(F32ToF16(FromBits(0xFFC00000u)), 0xFE00);  // -qNaN
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(FromBits(0x7F800001u)))));  // low payload
}

TEST(ConvertTest, F16RoundTripIsExactForEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = F16ToF32(static_cast<uint16_t>(h));
    uint16_t back = F32ToF16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(back))) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;
    } else {
      ASSERT_EQ(back, h) << "f16 0x" << std::hex << h;
    }
  }
}

TEST(ConvertTest, F16NarrowingMatchesNearestEvenAroundEveryMidpoint) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7FFF) >= 0x7BFF) continue;  // h+1 would be inf or NaN
    double lo = F16ToF32(static_cast<uint16_t>(h));
    double hi = F16ToF32(static_cast<uint16_t>(h + 1));
    float mid = static_cast<float>((lo + hi) / 2);  // exact: f16 has 11 bits
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
    float below = std::nextafter(mid, 0.0f), above = std::nextafter(mid, 2 * mid);
    for (float x : {below, mid, above}) {
      uint16_t want = NearestEven(x, static_cast<uint16_t>(h), static_cast<uint16_t>(h + 1), F16ToF32);
      ASSERT_EQ(F32ToF16(x), want) << "x=" << x << " h=0x" << std::hex << h;
    }
  }
}

TEST(ConvertTest, F16NarrowingMatchesReferenceOnRandomFloats) {
  std::mt19937 rng(1234);
  // Exponents spread over the f16 range and a little beyond it.
  std::uniform_int_distribution<uint32_t> mant(0, 0x7FFFFF), exp(100, 143), sign(0, 1);
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = (sign(rng) << 31) | (exp(rng) << 23) | mant(rng);
    float x = FromBits(u);
    double ax = std::fabs(static_cast<double>(x));
    uint16_t got = F32ToF16(x);
    if (ax >= 65520.0) {
      ASSERT_EQ(got & 0x7FFF, 0x7C00) << x;
      continue;
    }
    // Truncation toward zero in f16: the largest magnitude not above |x|.
    uint16_t t = 0;
    for (int bit = 14; bit >= 0; --bit) {
      uint16_t c = static_cast<uint16_t>(t | (1u << bit));
      if (c <= 0x7BFF && F16ToF32(c) <= ax) t = c;
    }
    uint16_t want = NearestEven(ax, t, static_cast<uint16_t>(t + 1), F16ToF32);
    ASSERT_EQ(got, want | (u >> 31 ? 0x8000 : 0)) << "x=" << x;
  }
}

TEST(ConvertTest, ArrayVersionsMatchScalar) {
  float in[5] = {1.0f, -0.1f, 3.14159f, 65519.0f, 1e-7f};
  uint16_t h[5], b[5];
  float back_h[5], back_b[5];
  F32ToF16(in, 5, h);
  F32ToBf16(in, 5, b);
  F16ToF32(h, 5, back_h);
  Bf16ToF32(b, 5, back_b);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(h[i], F32ToF16(in[i]));
    EXPECT_EQ(b[i], F32ToBf16(in[i]));
    EXPECT_EQ(Bits(back_h[i]), Bits(F16ToF32(h[i])));
    EXPECT_EQ(Bits(back_b[i]), Bits(Bf16ToF32(b[i])));
  }
  EXPECT_EQ(b[1], 0xBDCD);  // -0.1 = 0xBDCCCCCD -> rounds up
  EXPECT_EQ(h[1], 0xAE66);  // -0.1 in f16
}

}  // namespace
}  // namespace baton::cpu
