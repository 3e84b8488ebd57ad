// RMSNorm: forward against the HF Llama formula, backward against finite
// differences (dw accumulated), f32/f64 agreement, thread-count invariance.
#include <omp.h>

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

constexpr float kEps = 1e-5f;

TEST(RmsNorm, ForwardMatchesFormula) {
  std::mt19937_64 rng(1);
  const int64_t n = 19, c = 37;
  Tensor x = testing::RandomTensor({n, c}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({c}, DType::kF64, rng);
  Tensor y = Tensor::Empty({n, c}, DType::kF64), rstd = Tensor::Empty({n}, DType::kF64);
  BATON_EXPECT_OK(ops::RmsNorm(x, w, kEps, y, rstd));
  std::vector<double> ref_y(n * c), ref_rstd(n);
  for (int64_t i = 0; i < n; ++i) {
    double ms = 0;
    for (int64_t j = 0; j < c; ++j) ms += std::pow(x.data<double>()[i * c + j], 2);
    ref_rstd[i] = 1.0 / std::sqrt(ms / c + static_cast<double>(kEps));
    for (int64_t j = 0; j < c; ++j)
      ref_y[i * c + j] = x.data<double>()[i * c + j] * ref_rstd[i] * w.data<double>()[j];
  }
  EXPECT_TRUE(AllClose(testing::ToDoubles(y), ref_y, {1e-15, 1e-14}, "y"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(rstd), ref_rstd, {1e-15, 1e-14}, "rstd"));
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  const int64_t n = 7, c = 19;
  Tensor x = testing::RandomTensor({n, c}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({c}, DType::kF64, rng);
  Tensor r = testing::RandomTensor({n, c}, DType::kF64, rng);
  Tensor y = Tensor::Empty({n, c}, DType::kF64), rstd = Tensor::Empty({n}, DType::kF64);
  auto loss = [&] {
    BATON_EXPECT_OK(ops::RmsNorm(x, w, kEps, y, rstd));
    return testing::Dot(y, r);
  };
  loss();
  Tensor dx = Tensor::Empty({n, c}, DType::kF64);
  Tensor dw = testing::RandomTensor({c}, DType::kF64, rng);
  const std::vector<double> dw0 = testing::ToDoubles(dw);
  BATON_EXPECT_OK(ops::RmsNormBackward(r, x, w, rstd, dx, dw));
  std::vector<double> dw_added = testing::ToDoubles(dw);
  for (int64_t j = 0; j < c; ++j) dw_added[j] -= dw0[j];
  EXPECT_TRUE(AllClose(testing::ToDoubles(dx), testing::NumericGradient(x, loss), kGradTol, "dx"));
  EXPECT_TRUE(AllClose(dw_added, testing::NumericGradient(w, loss), kGradTol, "dw"));
}

// dres (a residual branch's gradient) joins dx in the same pass with the
// rounding of a separate add, also when it aliases dx.
TEST(RmsNorm, BackwardAddsTheResidualGradientLikeASeparateAdd) {
  std::mt19937_64 rng(5);
  const int64_t n = 33, c = 70;
  Tensor x = testing::RandomTensor({n, c}, DType::kF32, rng);
  Tensor w = testing::RandomTensor({c}, DType::kF32, rng);
  Tensor dy = testing::RandomTensor({n, c}, DType::kF32, rng);
  Tensor dres = testing::RandomTensor({n, c}, DType::kF32, rng);
  Tensor y = Tensor::Empty({n, c}, DType::kF32), rstd = Tensor::Empty({n}, DType::kF32);
  BATON_EXPECT_OK(ops::RmsNorm(x, w, kEps, y, rstd));
  Tensor dx_sep = Tensor::Empty({n, c}, DType::kF32), dw_sep = Tensor::Zeros({c}, DType::kF32);
  BATON_EXPECT_OK(ops::RmsNormBackward(dy, x, w, rstd, dx_sep, dw_sep));
  BATON_EXPECT_OK(ops::AddInPlace(dx_sep, dres));
  Tensor dx = Tensor::Empty({n, c}, DType::kF32), dw = Tensor::Zeros({c}, DType::kF32);
  BATON_EXPECT_OK(ops::RmsNormBackward(dy, x, w, rstd, dx, dw, &dres));
  EXPECT_TRUE(testing::BitwiseEqual(dx, dx_sep));
  EXPECT_TRUE(testing::BitwiseEqual(dw, dw_sep));
  Tensor alias = dres.Clone(), dw2 = Tensor::Zeros({c}, DType::kF32);
  BATON_EXPECT_OK(ops::RmsNormBackward(dy, x, w, rstd, alias, dw2, &alias));
  EXPECT_TRUE(testing::BitwiseEqual(alias, dx_sep));
  Tensor plain = Tensor::Empty({n, c}, DType::kF32), dw3 = Tensor::Zeros({c}, DType::kF32);
  BATON_EXPECT_OK(ops::RmsNormBackward(dy, x, w, rstd, plain, dw3));
  EXPECT_FALSE(testing::BitwiseEqual(plain, dx_sep));  // the residual really was added
}

TEST(RmsNorm, AddRmsNormIsAddThenRmsNorm) {
  std::mt19937_64 rng(6);
  const int64_t n = 21, c = 40;
  Tensor a = testing::RandomTensor({n, c}, DType::kF32, rng), b = testing::RandomTensor({n, c}, DType::kF32, rng);
  Tensor w = testing::RandomTensor({c}, DType::kF32, rng);
  Tensor sum = Tensor::Empty({n, c}, DType::kF32), y = Tensor::Empty({n, c}, DType::kF32),
         rstd = Tensor::Empty({n}, DType::kF32);
  BATON_EXPECT_OK(ops::AddRmsNorm(a, b, w, kEps, sum, y, rstd));
  Tensor sum2 = Tensor::Empty({n, c}, DType::kF32), y2 = Tensor::Empty({n, c}, DType::kF32),
         rstd2 = Tensor::Empty({n}, DType::kF32);
  BATON_EXPECT_OK(ops::Add(a, b, sum2));
  BATON_EXPECT_OK(ops::RmsNorm(sum2, w, kEps, y2, rstd2));
  EXPECT_TRUE(testing::BitwiseEqual(sum, sum2));
  EXPECT_TRUE(testing::BitwiseEqual(y, y2));
  EXPECT_TRUE(testing::BitwiseEqual(rstd, rstd2));
}

TEST(RmsNorm, F32AgreesWithF64AndThreadCountDoesNotMatter) {
  std::mt19937_64 rng(3);
  const int64_t n = 300, c = 130;  // big enough to take the threaded path
  Tensor x = testing::RandomTensor({n, c}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({c}, DType::kF64, rng);
  Tensor dy = testing::RandomTensor({n, c}, DType::kF64, rng);
  auto run = [&](DType dt, Tensor& y, Tensor& dx, Tensor& dw) {
    Tensor xx = testing::Convert(x, dt), ww = testing::Convert(w, dt);
    Tensor rstd = Tensor::Empty({n}, dt);
    y = Tensor::Empty({n, c}, dt);
    dx = Tensor::Empty({n, c}, dt);
    dw = Tensor::Zeros({c}, dt);
    BATON_EXPECT_OK(ops::RmsNorm(xx, ww, kEps, y, rstd));
    BATON_EXPECT_OK(ops::RmsNormBackward(testing::Convert(dy, dt), xx, ww, rstd, dx, dw));
  };
  Tensor y64, dx64, dw64, y32, dx32, dw32;
  run(DType::kF64, y64, dx64, dw64);
  run(DType::kF32, y32, dx32, dw32);
  // Per element a 130-term sum in f32; dw sums 300 rows of magnitude <= ~3.
  EXPECT_TRUE(AllClose(y32, y64, {1e-5, 1e-5}, "y"));
  EXPECT_TRUE(AllClose(dx32, dx64, {1e-5, 1e-5}, "dx"));
  EXPECT_TRUE(AllClose(dw32, dw64, {1e-4, 1e-5}, "dw"));

  const int saved = omp_get_max_threads();
  Tensor y1, dx1, dw1;
  omp_set_num_threads(1);
  run(DType::kF32, y1, dx1, dw1);
  omp_set_num_threads(saved);
  EXPECT_TRUE(testing::BitwiseEqual(dx1, dx32));
  EXPECT_TRUE(testing::BitwiseEqual(dw1, dw32));
}

}  // namespace
}  // namespace baton
