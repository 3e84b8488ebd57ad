// SwiGLU: forward against silu(g)·u, backward against finite differences,
// f32/f64 agreement.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

TEST(SwiGlu, ForwardMatchesFormula) {
  std::mt19937_64 rng(1);
  const Shape shape{5, 19};
  Tensor gate = testing::RandomTensor(shape, DType::kF64, rng, 0.1, 4.0);
  Tensor up = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor h = Tensor::Empty(shape, DType::kF64);
  BATON_EXPECT_OK(ops::SwiGlu(gate, up, h));
  std::vector<double> ref(gate.numel());
  for (int64_t i = 0; i < gate.numel(); ++i) {
    const double g = gate.data<double>()[i];
    ref[i] = g / (1.0 + std::exp(-g)) * up.data<double>()[i];
  }
  EXPECT_TRUE(AllClose(testing::ToDoubles(h), ref, {1e-15, 1e-14}, "h"));
}

TEST(SwiGlu, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  const Shape shape{3, 37};
  Tensor gate = testing::RandomTensor(shape, DType::kF64, rng, 0.1, 4.0);
  Tensor up = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor r = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor h = Tensor::Empty(shape, DType::kF64);
  auto loss = [&] {
    BATON_EXPECT_OK(ops::SwiGlu(gate, up, h));
    return testing::Dot(h, r);
  };
  Tensor dgate = Tensor::Empty(shape, DType::kF64), dup = Tensor::Empty(shape, DType::kF64);
  BATON_EXPECT_OK(ops::SwiGluBackward(r, gate, up, dgate, dup));
  EXPECT_TRUE(AllClose(testing::ToDoubles(dgate), testing::NumericGradient(gate, loss), kGradTol, "dgate"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(dup), testing::NumericGradient(up, loss), kGradTol, "dup"));
}

TEST(SwiGlu, F32AgreesWithF64) {
  std::mt19937_64 rng(3);
  const Shape shape{7, 111};
  Tensor gate = testing::RandomTensor(shape, DType::kF64, rng, 0.1, 6.0);
  Tensor up = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor dh = testing::RandomTensor(shape, DType::kF64, rng);
  Tensor h64 = Tensor::Empty(shape, DType::kF64), h32 = Tensor::Empty(shape, DType::kF32);
  BATON_EXPECT_OK(ops::SwiGlu(gate, up, h64));
  BATON_EXPECT_OK(ops::SwiGlu(testing::Convert(gate, DType::kF32), testing::Convert(up, DType::kF32), h32));
  EXPECT_TRUE(AllClose(h32, h64, {1e-6, 1e-6}, "h"));
  Tensor dg64 = Tensor::Empty(shape, DType::kF64), du64 = Tensor::Empty(shape, DType::kF64);
  Tensor dg32 = Tensor::Empty(shape, DType::kF32), du32 = Tensor::Empty(shape, DType::kF32);
  BATON_EXPECT_OK(ops::SwiGluBackward(dh, gate, up, dg64, du64));
  BATON_EXPECT_OK(ops::SwiGluBackward(testing::Convert(dh, DType::kF32), testing::Convert(gate, DType::kF32),
                      testing::Convert(up, DType::kF32), dg32, du32));
  EXPECT_TRUE(AllClose(dg32, dg64, {1e-6, 1e-6}, "dgate"));
  EXPECT_TRUE(AllClose(du32, du64, {1e-6, 1e-6}, "dup"));
}

}  // namespace
}  // namespace baton
