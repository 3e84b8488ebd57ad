// RoPE: forward against the HF rotate_half formula, backward against finite
// differences (it is the transpose of the rotation), round trip, f32/f64.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

constexpr double kTheta = 10000.0;

// HF: q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x2, x1),
// cos/sin = cos/sin(cat(freqs, freqs)), freqs[t, i] = t · theta^(−2i/D).
std::vector<double> HfRope(const Tensor& x) {
  const std::vector<double> v = testing::ToDoubles(x);
  const int64_t b = x.dim(0), t = x.dim(1), h = x.dim(2), d = x.dim(3), half = d / 2;
  std::vector<double> out(v.size());
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t p = 0; p < t; ++p)
      for (int64_t hh = 0; hh < h; ++hh) {
        const int64_t base = ((bi * t + p) * h + hh) * d;
        for (int64_t e = 0; e < d; ++e) {
          const double freq = p * std::pow(kTheta, -2.0 * static_cast<double>(e % half) / d);
          const double rot = e < half ? -v[base + e + half] : v[base + e - half];
          out[base + e] = v[base + e] * std::cos(freq) + rot * std::sin(freq);
        }
      }
  return out;
}

TEST(Rope, ForwardMatchesHfRotateHalf) {
  std::mt19937_64 rng(1);
  Tensor x = testing::RandomTensor({2, 7, 3, 10}, DType::kF64, rng);
  const std::vector<double> ref = HfRope(x);
  ops::Rope(x, kTheta);
  EXPECT_TRUE(AllClose(testing::ToDoubles(x), ref, {1e-15, 1e-14}, "x"));
}

TEST(Rope, BackwardMatchesFiniteDifferencesAndInvertsForward) {
  std::mt19937_64 rng(2);
  const Shape shape{2, 7, 4, 6};
  Tensor x = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor r = testing::RandomTensor(shape, DType::kF64, rng);
  auto loss = [&] {
    Tensor y = x.Clone();
    ops::Rope(y, kTheta);
    return testing::Dot(y, r);
  };
  Tensor dx = r.Clone();
  ops::RopeBackward(dx, kTheta);
  EXPECT_TRUE(AllClose(testing::ToDoubles(dx), testing::NumericGradient(x, loss), kGradTol, "dx"));

  Tensor y = x.Clone();
  ops::Rope(y, kTheta);
  ops::RopeBackward(y, kTheta);  // rotation by −angle undoes the forward
  EXPECT_TRUE(AllClose(y, x, {1e-15, 1e-14}, "round trip"));
}

TEST(Rope, F32AgreesWithF64) {
  std::mt19937_64 rng(3);
  Tensor x64 = testing::RandomTensor({2, 33, 4, 16}, DType::kF64, rng);
  Tensor x32 = testing::Convert(x64, DType::kF32);
  ops::Rope(x64, 500000.0);
  ops::Rope(x32, 500000.0);
  // Two products of f32-rounded cos/sin with |x| <= 1.
  EXPECT_TRUE(AllClose(x32, x64, {1e-6, 1e-6}, "x"));
}

}  // namespace
}  // namespace baton
