// Tests of the counter-based parameter RNG: Philox known answers, stable
// name hashing, sharding invariance (a slice fill equals the matching region
// of the full fill), moments of the normal samples, determinism.
#include "runtime/rng.h"

#include <cmath>
#include <cstring>

#include "gtest/gtest.h"

namespace baton {
namespace {

// Random123 tests/kat_vectors, the three "philox4x32 10" lines.
TEST(Philox, KnownAnswers) {
  using A4 = std::array<uint32_t, 4>;
  EXPECT_EQ(Philox4x32_10({0, 0, 0, 0}, {0, 0}), (A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(Philox4x32_10({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}),
            (A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(Philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
  // Negative: one flipped counter bit changes the answer.
  EXPECT_NE(Philox4x32_10({1, 0, 0, 0}, {0, 0}), (A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
}

TEST(Fnv1a64, ReferenceValues) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(FillNormal, SliceEqualsRegionOfFullFill) {
  const int64_t R = 13, C = 17;
  Tensor full = Tensor::Empty({R, C}, DType::kF32);
  FillNormal(full, 1234, "layers.0.attn.wq", 0.02f);
  // Column shard (tensor-parallel row-parallel weight), odd offsets.
  Tensor cols = Tensor::Empty({R - 3, 6}, DType::kF32);
  FillNormal2D(cols, 1234, "layers.0.attn.wq", 0.02f, C, 2, 5);
  for (int64_t r = 0; r < R - 3; ++r)
    for (int64_t c = 0; c < 6; ++c)
      ASSERT_EQ(cols.data<float>()[r * 6 + c], full.data<float>()[(r + 2) * C + c + 5]) << r << "," << c;
  // Row shard via a 1-D logical offset (odd row start: odd element index).
  Tensor rows = Tensor::Empty({4, C}, DType::kF32);
  FillNormal(rows, 1234, "layers.0.attn.wq", 0.02f, 7 * C);
  EXPECT_EQ(std::memcmp(rows.data<float>(), full.data<float>() + 7 * C, 4 * C * sizeof(float)), 0);
  // Negative: a different name or seed gives different values.
  Tensor other = Tensor::Empty({R, C}, DType::kF32);
  FillNormal(other, 1234, "layers.0.attn.wk", 0.02f);
  EXPECT_NE(std::memcmp(other.data<float>(), full.data<float>(), full.nbytes()), 0);
  FillNormal(other, 1235, "layers.0.attn.wq", 0.02f);
  EXPECT_NE(std::memcmp(other.data<float>(), full.data<float>(), full.nbytes()), 0);
}

TEST(FillNormal, DeterministicAndF64MatchesF32) {
  Tensor a = Tensor::Empty({1001}, DType::kF64), b = Tensor::Empty({1001}, DType::kF64);
  Tensor f = Tensor::Empty({1001}, DType::kF32);
  FillNormal(a, 7, "embed", 1.0f);
  FillNormal(b, 7, "embed", 1.0f);
  FillNormal(f, 7, "embed", 1.0f);
  EXPECT_EQ(std::memcmp(a.data<double>(), b.data<double>(), a.nbytes()), 0);
  for (int i = 0; i < 1001; ++i) ASSERT_EQ(f.data<float>()[i], static_cast<float>(a.data<double>()[i]));
}

TEST(FillNormal, MomentsOfStandardNormal) {
  const int64_t n = 200000;
  Tensor t = Tensor::Empty({n}, DType::kF64);
  FillNormal(t, 42, "moments", 0.5f);
  double s = 0, s2 = 0, s4 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = t.data<double>()[i] / 0.5;
    s += x;
    s2 += x * x;
    s4 += x * x * x * x;
  }
  const double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
  // Standard errors at n = 2e5: mean 0.0022, var 0.0032, 4th moment 0.022; 5 sigma.
  EXPECT_NEAR(mean, 0.0, 0.011);
  EXPECT_NEAR(var, 1.0, 0.016);
  EXPECT_NEAR(kurt, 3.0, 0.11);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// Fills take both normals of a Philox block at once; every offset parity and
// length must still give exactly NormalAt's value per element.
TEST(FillNormal, PairedFillEqualsElementwiseAtEveryOffsetAndLength) {
  const uint64_t hash = Fnv1a64("layers.0.mlp.w_up");
  for (int64_t offset = 0; offset < 6; ++offset) {
    for (int64_t n = 1; n < 8; ++n) {
      Tensor t = Tensor::Empty({n}, DType::kF64);
      FillNormal(t, 42, "layers.0.mlp.w_up", 0.5f, offset);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(t.data<double>()[i], 0.5f * NormalAt(42, hash, static_cast<uint64_t>(offset + i)))
            << "offset " << offset << " n " << n << " i " << i;
      }
    }
  }
}

}  // namespace
}  // namespace baton
