// Elementwise ops and reductions: values against plain loops, aliasing of
// Add, double accumulation of Sum/SumSquares, and identical bits for any
// thread count (the reductions are chunked in a fixed order).
#include <omp.h>

#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;

TEST(Elementwise, AddAddInPlaceScale) {
  std::mt19937_64 rng(1);
  const Shape shape{7, 19};
  Tensor a = testing::RandomTensor(shape, DType::kF32, rng);
  Tensor b = testing::RandomTensor(shape, DType::kF32, rng);
  Tensor out = Tensor::Empty(shape, DType::kF32);
  BATON_EXPECT_OK(ops::Add(a, b, out));
  for (int64_t i = 0; i < a.numel(); ++i)
    EXPECT_EQ(out.data<float>()[i], a.data<float>()[i] + b.data<float>()[i]);
  Tensor a2 = a.Clone();
  BATON_EXPECT_OK(ops::Add(a2, b, a2));  // out aliases a
  EXPECT_TRUE(testing::BitwiseEqual(a2, out));
  Tensor y = a.Clone();
  BATON_EXPECT_OK(ops::AddInPlace(y, b));
  EXPECT_TRUE(testing::BitwiseEqual(y, out));
  BATON_EXPECT_OK(ops::Scale(y, -0.5f));
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y.data<float>()[i], out.data<float>()[i] * -0.5f);
}

TEST(Elementwise, SumsAccumulateInDouble) {
  // 2^24 + many ones: a float accumulator would stall at 2^24.
  const int64_t n = 100003;
  Tensor x = Tensor::Empty({n}, DType::kF32);
  for (int64_t i = 0; i < n; ++i) x.data<float>()[i] = 1.0f;
  x.data<float>()[0] = 16777216.0f;
  EXPECT_EQ(ops::Sum(x).value(), 16777216.0 + (n - 1));
  EXPECT_EQ(ops::SumSquares(x).value(), 16777216.0 * 16777216.0 + (n - 1));
}

TEST(Elementwise, SumsMatchPlainLoopAndAnyThreadCount) {
  std::mt19937_64 rng(2);
  const int64_t n = 98765;  // several chunks, not a multiple of the chunk size
  const Tensor x = testing::RandomTensor({n}, DType::kF64, rng);
  long double s = 0, ss = 0;
  for (int64_t i = 0; i < n; ++i) {
    s += x.data<double>()[i];
    ss += static_cast<long double>(x.data<double>()[i]) * x.data<double>()[i];
  }
  EXPECT_NEAR(ops::Sum(x).value(), static_cast<double>(s), 1e-10);
  EXPECT_NEAR(ops::SumSquares(x).value(), static_cast<double>(ss), 1e-10);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double s1 = ops::Sum(x).value(), ss1 = ops::SumSquares(x).value();
  omp_set_num_threads(3);
  const double s3 = ops::Sum(x).value(), ss3 = ops::SumSquares(x).value();
  omp_set_num_threads(saved);
  EXPECT_EQ(s1, s3);
  EXPECT_EQ(ss1, ss3);
}

// A bad argument is InvalidArgument naming the op, the argument and the shapes.
TEST(Elementwise, MismatchedShapesAndDTypesAreInvalidArguments) {
  Tensor a = Tensor::Zeros({4, 3}, DType::kF32), b = Tensor::Zeros({3, 4}, DType::kF32);
  absl::Status st = ops::AddInPlace(a, b);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::ContainsRegex("AddInPlace: x is f32\\[3, 4\\].*expected shape \\[4, 3\\]"));
  Tensor c = Tensor::Zeros({4, 3}, DType::kF64);
  st = ops::AddInPlace(a, c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::ContainsRegex("AddInPlace: x is f64.*expected dtype f32"));
  Tensor i = Tensor::Zeros({4}, DType::kI32);
  const absl::StatusOr<double> sum = ops::Sum(i);
  EXPECT_EQ(sum.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(sum.status().message()), ::testing::ContainsRegex("Sum: x is i32.*f32 or f64"));
}

}  // namespace
}  // namespace baton
