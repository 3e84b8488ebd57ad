// RoPE: forward against the HF rotate_half formula (unscaled, linear and
// llama3 frequencies), llama3 inverse frequencies against a port of HF's
// _compute_llama3_parameters in each of its three bands, backward against
// finite differences (it is the transpose of the rotation), round trip,
// f32/f64, and ModelConfig's checks of the scaling fields.
#include <cmath>
#include <functional>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model_config.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

constexpr double kTheta = 10000.0;
constexpr double kPi = 3.141592653589793;

// Llama 3.1's shape with a short original context, so that a head of
// D = 16 (8 frequencies, theta 500000) has pair 0 in the high-frequency band
// (wavelen 6.3 < 64/4), pair 1 in the blended band (wavelen 32.4) and pairs
// 2..7 in the low-frequency band (wavelen >= 169 > 64/1).
RopeParams Llama3Params() {
  RopeParams p;
  p.theta = 500000.0;
  p.scaling.type = RopeScaling::Type::kLlama3;
  p.scaling.factor = 8.0;
  p.scaling.low_freq_factor = 1.0;
  p.scaling.high_freq_factor = 4.0;
  p.scaling.original_max_position = 64;
  return p;
}

// A line-by-line port of transformers' _compute_llama3_parameters for one
// frequency (torch.where on the three masks), independent of the kernel's.
double HfLlama3InvFreq(double theta, int64_t i, int64_t d, const RopeScaling& s) {
  const double inv_freq = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(d));
  const double old_context_len = static_cast<double>(s.original_max_position);
  const double low_freq_wavelen = old_context_len / s.low_freq_factor;
  const double high_freq_wavelen = old_context_len / s.high_freq_factor;
  const double wavelen = 2 * kPi / inv_freq;
  double inv_freq_llama = wavelen > low_freq_wavelen ? inv_freq / s.factor : inv_freq;
  const double smooth_factor = (old_context_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const double smoothed = (1 - smooth_factor) * inv_freq_llama / s.factor + smooth_factor * inv_freq_llama;
  const bool is_medium_freq = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
  return is_medium_freq ? smoothed : inv_freq_llama;
}

// HF: q_embed = q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x2, x1),
// cos/sin = cos/sin(cat(freqs, freqs)), freqs[t, i] = angle(t, i).
std::vector<double> HfRope(const Tensor& x, const std::function<double(int64_t, int64_t)>& angle) {
  const std::vector<double> v = testing::ToDoubles(x);
  const int64_t b = x.dim(0), t = x.dim(1), h = x.dim(2), d = x.dim(3), half = d / 2;
  std::vector<double> out(v.size());
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t p = 0; p < t; ++p)
      for (int64_t hh = 0; hh < h; ++hh) {
        const int64_t base = ((bi * t + p) * h + hh) * d;
        for (int64_t e = 0; e < d; ++e) {
          const double freq = angle(p, e % half);
          const double rot = e < half ? -v[base + e + half] : v[base + e - half];
          out[base + e] = v[base + e] * std::cos(freq) + rot * std::sin(freq);
        }
      }
  return out;
}

std::vector<double> HfRope(const Tensor& x, double theta) {
  const double d = static_cast<double>(x.dim(3));
  return HfRope(x, [&](int64_t p, int64_t i) { return p * std::pow(theta, -2.0 * static_cast<double>(i) / d); });
}

TEST(Rope, ForwardMatchesHfRotateHalf) {
  std::mt19937_64 rng(1);
  Tensor x = testing::RandomTensor({2, 7, 3, 10}, DType::kF64, rng);
  const std::vector<double> ref = HfRope(x, kTheta);
  BATON_EXPECT_OK(ops::Rope(x, kTheta));
  EXPECT_TRUE(AllClose(testing::ToDoubles(x), ref, {1e-15, 1e-14}, "x"));
}

TEST(Rope, Llama3InverseFrequencyInEachBand) {
  const RopeParams p = Llama3Params();
  const int64_t d = 16;
  // The three bands, by value: unchanged, blended, divided by factor.
  EXPECT_EQ(RopeInverseFrequency(p, 0, d), 1.0);
  const double f1 = std::pow(500000.0, -2.0 / 16);
  const double wavelen1 = 2 * kPi / f1;  // 32.40
  ASSERT_GT(wavelen1, 64.0 / 4);
  ASSERT_LT(wavelen1, 64.0 / 1);
  const double smooth = (64.0 / wavelen1 - 1.0) / (4.0 - 1.0);  // 0.3251
  EXPECT_NEAR(smooth, 0.32509, 1e-5);
  EXPECT_NEAR(RopeInverseFrequency(p, 1, d), (1 - smooth) * f1 / 8 + smooth * f1, 1e-16);
  EXPECT_GT(RopeInverseFrequency(p, 1, d), f1 / 8 * 1.5);  // really blended, not an end point
  EXPECT_LT(RopeInverseFrequency(p, 1, d), f1 * 0.5);
  for (int64_t i = 2; i < d / 2; ++i) {
    EXPECT_DOUBLE_EQ(RopeInverseFrequency(p, i, d), std::pow(500000.0, -2.0 * i / 16) / 8) << i;
  }
  // And every pair against the port of HF's vectorised formula, for two shapes.
  for (int64_t dd : {16, 128}) {
    RopeParams q = p;
    if (dd == 128) q.scaling.original_max_position = 8192;  // Llama 3.1 itself
    for (int64_t i = 0; i < dd / 2; ++i) {
      const double want = HfLlama3InvFreq(q.theta, i, dd, q.scaling);
      EXPECT_NEAR(RopeInverseFrequency(q, i, dd), want, 1e-15 * want) << dd << " " << i;
    }
  }
}

TEST(Rope, Llama3ForwardMatchesHfWithScaledFrequencies) {
  std::mt19937_64 rng(5);
  const RopeParams p = Llama3Params();
  Tensor x = testing::RandomTensor({2, 19, 3, 16}, DType::kF64, rng);
  const Tensor x0 = x.Clone();
  const std::vector<double> ref =
      HfRope(x, [&](int64_t t, int64_t i) { return t * HfLlama3InvFreq(p.theta, i, 16, p.scaling); });
  BATON_EXPECT_OK(ops::Rope(x, p));
  EXPECT_TRUE(AllClose(testing::ToDoubles(x), ref, {1e-14, 1e-13}, "x"));
  // The scaling reaches the rotation: unscaled RoPE misses the same budget.
  Tensor plain = x0.Clone();
  BATON_EXPECT_OK(ops::Rope(plain, p.theta));
  EXPECT_FALSE(AllClose(testing::ToDoubles(plain), ref, {1e-14, 1e-13}, "unscaled"));
}

TEST(Rope, LinearEqualsUnscaledAtPositionsOverFactor) {
  std::mt19937_64 rng(6);
  RopeParams p{kTheta, {}};
  p.scaling.type = RopeScaling::Type::kLinear;
  p.scaling.factor = 4.0;
  Tensor x = testing::RandomTensor({2, 11, 2, 12}, DType::kF64, rng);
  // HF's original linear scaling: positions t/factor with the unscaled inv_freq.
  const std::vector<double> ref =
      HfRope(x, [](int64_t t, int64_t i) { return (t / 4.0) * std::pow(kTheta, -2.0 * i / 12); });
  BATON_EXPECT_OK(ops::Rope(x, p));
  EXPECT_TRUE(AllClose(testing::ToDoubles(x), ref, {1e-14, 1e-13}, "x"));
  EXPECT_EQ(RopeInverseFrequency(p, 3, 12), std::pow(kTheta, -0.5) / 4.0);
}

TEST(Rope, BackwardMatchesFiniteDifferencesAndInvertsForward) {
  RopeParams linear{kTheta, {}};
  linear.scaling.type = RopeScaling::Type::kLinear;
  linear.scaling.factor = 2.5;
  for (const RopeParams& params : {RopeParams{kTheta, {}}, linear, Llama3Params()}) {
    SCOPED_TRACE(RopeScalingName(params.scaling.type));
    std::mt19937_64 rng(2);
    const Shape shape{2, 7, 4, 16};
    Tensor x = testing::RandomTensor(shape, DType::kF64, rng);
    Tensor r = testing::RandomTensor(shape, DType::kF64, rng);
    auto loss = [&] {
      Tensor y = x.Clone();
      BATON_EXPECT_OK(ops::Rope(y, params));
      return testing::Dot(y, r);
    };
    Tensor dx = r.Clone();
    BATON_EXPECT_OK(ops::RopeBackward(dx, params));
    EXPECT_TRUE(AllClose(testing::ToDoubles(dx), testing::NumericGradient(x, loss), kGradTol, "dx"));

    Tensor y = x.Clone();
    BATON_EXPECT_OK(ops::Rope(y, params));
    BATON_EXPECT_OK(ops::RopeBackward(y, params));  // rotation by −angle undoes the forward
    EXPECT_TRUE(AllClose(y, x, {1e-15, 1e-14}, "round trip"));
  }
}

TEST(Rope, F32AgreesWithF64) {
  for (const RopeParams& params : {RopeParams{500000.0, {}}, Llama3Params()}) {
    std::mt19937_64 rng(3);
    Tensor x64 = testing::RandomTensor({2, 33, 4, 16}, DType::kF64, rng);
    Tensor x32 = testing::Convert(x64, DType::kF32);
    BATON_EXPECT_OK(ops::Rope(x64, params));
    BATON_EXPECT_OK(ops::Rope(x32, params));
    // Two products of f32-rounded cos/sin with |x| <= 1.
    EXPECT_TRUE(AllClose(x32, x64, {1e-6, 1e-6}, "x")) << RopeScalingName(params.scaling.type);
  }
}

TEST(RopeScalingConfig, ValidateNamesTheField) {
  ModelConfig m;
  m.rope_scaling = Llama3Params().scaling;
  EXPECT_TRUE(m.Validate().ok()) << m.Validate();
  EXPECT_EQ(m.rope().theta, m.rope_theta);
  EXPECT_EQ(m.rope().scaling.original_max_position, 64);
  auto expect_bad = [](const ModelConfig& c, const std::string& msg) {
    absl::Status s = c.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << msg;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(msg));
  };
  ModelConfig c = m;
  c.rope_scaling.factor = 0;
  expect_bad(c, "model.rope_scaling_factor=0 must be > 0 with model.rope_scaling=llama3");
  c = m;
  c.rope_scaling.high_freq_factor = 1.0;
  expect_bad(c, "model.rope_high_freq_factor=1 must be > model.rope_low_freq_factor=1");
  c = m;
  c.rope_scaling.low_freq_factor = -1.0;
  expect_bad(c, "model.rope_low_freq_factor=-1 must be > 0");
  c = m;
  c.rope_scaling.original_max_position = 0;
  expect_bad(c, "model.rope_original_max_position=0 must be >= 1");
  c = m;
  c.rope_scaling.type = RopeScaling::Type::kLinear;
  c.rope_scaling.factor = -2;
  expect_bad(c, "model.rope_scaling_factor=-2 must be > 0 with model.rope_scaling=linear");
  // With no scaling the other fields are unused and unchecked.
  c.rope_scaling.type = RopeScaling::Type::kNone;
  EXPECT_TRUE(c.Validate().ok());
}

}  // namespace
}  // namespace baton
