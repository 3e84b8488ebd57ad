// The host side of kernels/philox_normal.h, the draw shared by the CPU and
// GPU parameter fills: its own log and cos/sin against long-double libm
// (accurate to a few double ulps, exact at the ends), pinned values of the
// draw (a change to the formulation changes every model's initial weights
// and must be deliberate), and how far it is from the libm formulation it
// replaced (the f32 weights differ in about one element in 4·10^7).
#include "kernels/philox_normal.h"

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>

#include "gtest/gtest.h"
#include "runtime/rng.h"

namespace baton {
namespace {

using philox::CosSinTwoPi;
using philox::LogUnit;

TEST(PhiloxNormal, LogUnitIsAccurateAndExactAtTheEnds) {
  EXPECT_EQ(LogUnit(1.0), 0.0);
  EXPECT_EQ(LogUnit(0.5), -std::numbers::ln2);  // e·ln2 split: exact to the double
  EXPECT_NEAR(LogUnit(0x1.0p-53), -53 * std::numbers::ln2, 1e-14);
  std::mt19937_64 rng(5);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const uint64_t a = rng() >> 11;  // what the draw feeds it: (a + 1)·2^-53
    const double u = static_cast<double>(a + 1) * 0x1.0p-53;
    const long double ref = logl(static_cast<long double>(u));
    if (ref == 0) continue;
    worst = std::max(worst, static_cast<double>(fabsl((LogUnit(u) - ref) / ref)));
  }
  // 2^-52 = 2.2e-16 is one ulp: the series and the division round ~1.5 ulp.
  EXPECT_LT(worst, 6.7e-16) << worst;
  EXPECT_GT(worst, 0.0);  // not a tautology: it is an approximation
}

TEST(PhiloxNormal, CosSinAreAccurateAcrossQuadrants) {
  EXPECT_EQ(CosSinTwoPi(0).cos, 1.0);
  EXPECT_EQ(CosSinTwoPi(0).sin, 0.0);
  EXPECT_EQ(CosSinTwoPi(uint64_t{1} << 51).cos, 0.0);  // a quarter turn: exactly (0, 1)
  EXPECT_EQ(CosSinTwoPi(uint64_t{1} << 51).sin, 1.0);
  EXPECT_EQ(CosSinTwoPi(uint64_t{1} << 52).cos, -1.0);
  std::mt19937_64 rng(6);
  const long double two_pi = 2.0L * 3.141592653589793238462643383279502884L;
  double worst = 0;
  auto check = [&](uint64_t b) {
    const long double angle = two_pi * static_cast<long double>(b) * 0x1.0p-53L;
    const philox::CosSin cs = CosSinTwoPi(b);
    worst = std::max({worst, static_cast<double>(fabsl(cs.cos - cosl(angle))),
                      static_cast<double>(fabsl(cs.sin - sinl(angle)))});
  };
  for (int i = 0; i < 200000; ++i) check(rng() >> 11);
  for (uint64_t q = 0; q <= 4; ++q) {  // around the octant and quadrant boundaries
    for (int64_t d = -3; d <= 3; ++d) {
      for (uint64_t edge : {q << 51, (q << 51) + (uint64_t{1} << 50)}) {
        const int64_t b = static_cast<int64_t>(edge) + d;
        if (b >= 0 && b < (int64_t{1} << 53)) check(static_cast<uint64_t>(b));
      }
    }
  }
  EXPECT_LT(worst, 4.5e-16) << worst;  // two ulps of 1
}

// Pinned draws: the CPU fills and the GPU fill (kernels/cuda/philox_init.h)
// must keep producing exactly these.
TEST(PhiloxNormal, PinnedValues) {
  const uint64_t h = Fnv1a64("layers.0.attn.wq");
  EXPECT_EQ(NormalAt(1234, h, 0), 0x1.1cf3391472d26p+0);
  EXPECT_EQ(NormalAt(1234, h, 1), -0x1.dc563b688af1fp+0);
  EXPECT_EQ(NormalAt(0, Fnv1a64("embed"), 1000001), -0x1.3d7e412dc1dbp-2);
  EXPECT_EQ(NormalAt(0xDEADBEEFCAFEull, Fnv1a64("lm_head"), 7), -0x1.19bb54bd37f84p-1);
}

// Against the formulation it replaced (std::log, std::cos, std::sin of
// 2π·u2): the doubles agree to a few ulps, and the f32 weights rounded from
// them differ in a handful of elements per 10^8.
TEST(PhiloxNormal, CloseToTheLibmFormulation) {
  const uint64_t hash = Fnv1a64("layers.3.mlp.w_up");
  const int64_t pairs = 1000000;
  double worst = 0;
  int64_t f32_diffs = 0;
  for (int64_t blk = 0; blk < pairs; ++blk) {
    const std::array<uint32_t, 4> out = Philox4x32_10(
        {static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), 1234u, 0u},
        {static_cast<uint32_t>(hash), static_cast<uint32_t>(hash >> 32)});
    const uint64_t a = (uint64_t{out[0]} << 32 | out[1]) >> 11;
    const uint64_t b = (uint64_t{out[2]} << 32 | out[3]) >> 11;
    const double r = std::sqrt(-2.0 * std::log((static_cast<double>(a) + 1.0) * 0x1.0p-53));
    const double angle = 2.0 * std::numbers::pi * (static_cast<double>(b) * 0x1.0p-53);
    const double old[2] = {r * std::cos(angle), r * std::sin(angle)};
    for (int k = 0; k < 2; ++k) {
      const double now = NormalAt(1234, hash, static_cast<uint64_t>(2 * blk + k));
      worst = std::max(worst, std::fabs(now - old[k]) / std::max(1.0, std::fabs(old[k])));
      f32_diffs += static_cast<float>(0.02 * now) != static_cast<float>(0.02 * old[k]);
    }
  }
  // The old angle 2π·u2 was rounded to a double (up to 4.4e-16 off at 2π),
  // and r <= sqrt(2·53·ln 2) = 8.6 scales that: 3.8e-15 at most.
  EXPECT_LT(worst, 4e-15) << worst;
  EXPECT_LE(f32_diffs, 2) << "of " << 2 * pairs;
}

}  // namespace
}  // namespace baton
