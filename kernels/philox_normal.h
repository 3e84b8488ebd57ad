// The counter-based normal draw behind parameter initialisation, as one
// host+device function so the CPU (runtime/rng.cc) and the GPU
// (kernels/cuda/philox_init.cu) produce the same bits for every element.
// Philox4x32-10 (Salmon et al. 2011) gives four 32-bit words per block; two
// 53-bit uniforms from them feed Box–Muller. The libm log, sin and cos of the
// host and of CUDA differ in the last bit (neither is correctly rounded), so
// they are not used: log, sin and cos are evaluated here with only
// correctly rounded IEEE operations (+ − × ÷, sqrt, explicit fma) in a fixed
// order, and with the argument reduction done in integers. Invariant: no
// product feeds an addition except through an explicit fma, so neither
// nvcc's default contraction nor GCC's -ffp-contract=fast can change a
// result; each function is accurate to a few double ulps, far below the f32
// the weights are stored in.
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#ifndef BATON_HOST_DEVICE
#define BATON_HOST_DEVICE __host__ __device__
#endif
#else
#ifndef BATON_HOST_DEVICE
#define BATON_HOST_DEVICE
#endif
#endif

namespace baton::philox {

// Products and fmas that the device compiler may not fuse or reorder.
BATON_HOST_DEVICE inline double Mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
BATON_HOST_DEVICE inline double Fma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return fma(a, b, c);
#endif
}

struct Block {
  uint32_t w[4];
};

// Random123's Philox4x32 with 10 rounds; counter and key in its word order,
// so its known-answer vectors apply unchanged (tests/runtime/rng_test.cc).
BATON_HOST_DEVICE inline Block Philox4x32_10(Block ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Random123 multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = uint64_t{kM0} * ctr.w[0];
    const uint64_t p1 = uint64_t{kM1} * ctr.w[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Block{{hi1 ^ ctr.w[1] ^ k0, lo1, hi0 ^ ctr.w[3] ^ k1, lo0}};
  }
  return ctr;
}

// log(u) for u in [2^-53, 1]. u = m·2^e with m in [√½, √2); log m =
// 2·atanh(s), s = (m−1)/(m+1), |s| <= 0.1716: the series to s^23 leaves a
// relative error below 1e-18. m − 1 is exact (Sterbenz), m·2 and e·ln2_hi
// too (ln2_hi has 32 trailing zero bits).
BATON_HOST_DEVICE inline double LogUnit(double u) {
  int e = 0;
  double m = frexp(u, &e);  // m in [0.5, 1), exact
  if (m < 0.70710678118654752440) {
    m = m * 2.0;
    e -= 1;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = Mul(s, s);
  // P(s2) = Σ_{k=1..11} 2/(2k+1) · s2^(k-1); log m = 2s + s·s2·P(s2).
  double p = 2.0 / 23.0;
  p = Fma(p, s2, 2.0 / 21.0);
  p = Fma(p, s2, 2.0 / 19.0);
  p = Fma(p, s2, 2.0 / 17.0);
  p = Fma(p, s2, 2.0 / 15.0);
  p = Fma(p, s2, 2.0 / 13.0);
  p = Fma(p, s2, 2.0 / 11.0);
  p = Fma(p, s2, 2.0 / 9.0);
  p = Fma(p, s2, 2.0 / 7.0);
  p = Fma(p, s2, 2.0 / 5.0);
  p = Fma(p, s2, 2.0 / 3.0);
  const double log_m = Fma(Mul(s, s2), p, Mul(2.0, s));
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000
  constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 − kLn2Hi
  const double de = static_cast<double>(e);
  return Fma(de, kLn2Hi, Fma(de, kLn2Lo, log_m));
}

// cos and sin of 2π·b·2^-53 for an integer b in [0, 2^53). The quadrant
// comes from b in integers: b = q·2^51 + r, |r| <= 2^50, so the angle is
// (π/2)·(q + f) with f = r·2^-51 exact, and y = (π/2)·f is in [−π/4, π/4]
// where the Taylor series to y^19 (sin) and y^18 (cos) are good to 1e-18.
struct CosSin {
  double cos, sin;
};
BATON_HOST_DEVICE inline CosSin CosSinTwoPi(uint64_t b) {
  const uint64_t q = (b + (uint64_t{1} << 50)) >> 51;  // nearest quarter turn, 0..4
  const int64_t r = static_cast<int64_t>(b) - static_cast<int64_t>(q << 51);
  const double f = static_cast<double>(r) * 0x1.0p-51;  // exact: |r| < 2^51
  const double y = Mul(f, 1.57079632679489661923);       // π/2
  const double y2 = Mul(y, y);
  // sin y = y + y³·S(y²), S = Σ_{k=1..9} (−1)^k y^(2k−2) / (2k+1)!
  double s = -1.0 / 121645100408832000.0;  // 1/19!
  s = Fma(s, y2, 1.0 / 355687428096000.0);  // 1/17!
  s = Fma(s, y2, -1.0 / 1307674368000.0);   // 1/15!
  s = Fma(s, y2, 1.0 / 6227020800.0);       // 1/13!
  s = Fma(s, y2, -1.0 / 39916800.0);        // 1/11!
  s = Fma(s, y2, 1.0 / 362880.0);           // 1/9!
  s = Fma(s, y2, -1.0 / 5040.0);            // 1/7!
  s = Fma(s, y2, 1.0 / 120.0);              // 1/5!
  s = Fma(s, y2, -1.0 / 6.0);               // 1/3!
  const double sin_y = Fma(Mul(y, y2), s, y);
  // cos y = 1 − y²/2 + y⁴·C(y²), C = Σ_{k=2..9} (−1)^k y^(2k−4) / (2k)!
  double c = -1.0 / 6402373705728000.0;     // 1/18!
  c = Fma(c, y2, 1.0 / 20922789888000.0);   // 1/16!
  c = Fma(c, y2, -1.0 / 87178291200.0);     // 1/14!
  c = Fma(c, y2, 1.0 / 479001600.0);        // 1/12!
  c = Fma(c, y2, -1.0 / 3628800.0);         // 1/10!
  c = Fma(c, y2, 1.0 / 40320.0);            // 1/8!
  c = Fma(c, y2, -1.0 / 720.0);             // 1/6!
  c = Fma(c, y2, 1.0 / 24.0);               // 1/4!
  const double cos_y = Fma(Mul(y2, y2), c, Fma(-0.5, y2, 1.0));
  switch (q & 3) {  // cos and sin of (π/2)·q + y
    case 0: return {cos_y, sin_y};
    case 1: return {-sin_y, cos_y};
    case 2: return {-cos_y, -sin_y};
    default: return {sin_y, -cos_y};
  }
}

// Both standard normals of Philox block `block` of the stream (seed,
// name_hash): element 2·block is .first (the cosine branch), 2·block + 1
// is .second. Counter = (block, seed), key = name_hash.
struct NormalPair {
  double first, second;
};
BATON_HOST_DEVICE inline NormalPair NormalPairAt(uint64_t seed, uint64_t name_hash, uint64_t block) {
  const Block out = Philox4x32_10(
      Block{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(seed),
             static_cast<uint32_t>(seed >> 32)}},
      static_cast<uint32_t>(name_hash), static_cast<uint32_t>(name_hash >> 32));
  // 53-bit uniforms: u1 = (a + 1)·2^-53 in (0, 1] so that log(u1) is finite;
  // u2 = b·2^-53 in [0, 1), passed as the integer b.
  const uint64_t a = (uint64_t{out.w[0]} << 32 | out.w[1]) >> 11;
  const uint64_t b = (uint64_t{out.w[2]} << 32 | out.w[3]) >> 11;
  const double u1 = static_cast<double>(a + 1) * 0x1.0p-53;  // exact: a + 1 <= 2^53
  const double r = sqrt(Mul(-2.0, LogUnit(u1)));
  const CosSin cs = CosSinTwoPi(b);
  return {Mul(r, cs.cos), Mul(r, cs.sin)};
}

}  // namespace baton::philox
