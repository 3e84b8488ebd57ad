// MatMul, Linear and LinearBackward against naive loops, finite differences
// in double, and f32/f64 agreement; odd shapes throughout.
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

// c = alpha·op(a)·op(b) + beta·c with explicit loops in double.
std::vector<double> NaiveMatMul(const Tensor& a, bool ta, const Tensor& b, bool tb,
                                const std::vector<double>& c0, double alpha, double beta) {
  const std::vector<double> av = testing::ToDoubles(a), bv = testing::ToDoubles(b);
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  const int64_t n = tb ? b.dim(0) : b.dim(1);
  std::vector<double> c(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (ta ? av[p * m + i] : av[i * k + p]) * (tb ? bv[j * k + p] : bv[p * n + j]);
      c[i * n + j] = alpha * s + beta * c0[i * n + j];
    }
  return c;
}

TEST(MatMul, AllTransposesMatchNaiveLoops) {
  std::mt19937_64 rng(1);
  const int64_t m = 7, k = 13, n = 5;
  for (DType dt : {DType::kF32, DType::kF64}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        Tensor a = testing::RandomTensor(ta ? Shape{k, m} : Shape{m, k}, dt, rng);
        Tensor b = testing::RandomTensor(tb ? Shape{n, k} : Shape{k, n}, dt, rng);
        Tensor c = testing::RandomTensor({m, n}, dt, rng);
        const std::vector<double> ref =
            NaiveMatMul(a, ta, b, tb, testing::ToDoubles(c), 0.75, -0.5);
        BATON_EXPECT_OK(ops::MatMul(a, ta, b, tb, c, 0.75f, -0.5f));
        // f32: 13 products of |x| <= 1 rounded at 2^-24 each, well under 1e-5.
        const testing::Tolerance tol =
            dt == DType::kF32 ? testing::Tolerance{1e-5, 1e-5} : testing::Tolerance{1e-13, 1e-13};
        EXPECT_TRUE(AllClose(testing::ToDoubles(c), ref, tol,
                             absl::StrCat(DTypeName(dt), " ta=", ta, " tb=", tb)));
      }
    }
  }
}

TEST(Linear, ForwardMatchesNaiveWithBias) {
  std::mt19937_64 rng(2);
  const int64_t n = 9, in = 11, out = 6;
  Tensor x = testing::RandomTensor({n, in}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({out, in}, DType::kF64, rng);
  Tensor b = testing::RandomTensor({out}, DType::kF64, rng);
  Tensor y = Tensor::Empty({n, out}, DType::kF64);
  BATON_EXPECT_OK(ops::Linear(x, w, &b, y));
  std::vector<double> ref(n * out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.data<double>()[o];
      for (int64_t p = 0; p < in; ++p) s += x.data<double>()[i * in + p] * w.data<double>()[o * in + p];
      ref[i * out + o] = s;
    }
  EXPECT_TRUE(AllClose(testing::ToDoubles(y), ref, {1e-13, 1e-13}, "y"));
}

TEST(Linear, BackwardMatchesFiniteDifferencesAndAccumulates) {
  std::mt19937_64 rng(3);
  const int64_t n = 9, in = 11, out = 6;
  Tensor x = testing::RandomTensor({n, in}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({out, in}, DType::kF64, rng);
  Tensor b = testing::RandomTensor({out}, DType::kF64, rng);
  Tensor r = testing::RandomTensor({n, out}, DType::kF64, rng);
  Tensor y = Tensor::Empty({n, out}, DType::kF64);
  auto loss = [&] {
    BATON_EXPECT_OK(ops::Linear(x, w, &b, y));
    return testing::Dot(y, r);
  };
  // dw, db start from a known nonzero value: the op must add, not overwrite.
  Tensor dx = Tensor::Empty({n, in}, DType::kF64);
  Tensor dw = testing::RandomTensor({out, in}, DType::kF64, rng);
  Tensor db = testing::RandomTensor({out}, DType::kF64, rng);
  const std::vector<double> dw0 = testing::ToDoubles(dw), db0 = testing::ToDoubles(db);
  BATON_EXPECT_OK(ops::LinearBackward(r, x, w, &dx, &dw, &db));
  std::vector<double> dw_added = testing::ToDoubles(dw), db_added = testing::ToDoubles(db);
  for (size_t i = 0; i < dw0.size(); ++i) dw_added[i] -= dw0[i];
  for (size_t i = 0; i < db0.size(); ++i) db_added[i] -= db0[i];
  EXPECT_TRUE(AllClose(testing::ToDoubles(dx), testing::NumericGradient(x, loss), kGradTol, "dx"));
  EXPECT_TRUE(AllClose(dw_added, testing::NumericGradient(w, loss), kGradTol, "dw"));
  EXPECT_TRUE(AllClose(db_added, testing::NumericGradient(b, loss), kGradTol, "db"));
}

// accumulate_dx adds dy·w onto dx (two projections of one input sum their
// input gradients in the second GEMM); without it dx is overwritten.
TEST(Linear, BackwardAccumulatesDxWhenAsked) {
  std::mt19937_64 rng(4);
  const int64_t n = 13, in = 17, out = 5;
  Tensor x = testing::RandomTensor({n, in}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({out, in}, DType::kF64, rng);
  Tensor dy = testing::RandomTensor({n, out}, DType::kF64, rng);
  Tensor dx0 = testing::RandomTensor({n, in}, DType::kF64, rng);
  Tensor plain = Tensor::Empty({n, in}, DType::kF64);
  BATON_EXPECT_OK(ops::LinearBackward(dy, x, w, &plain, nullptr, nullptr));
  Tensor acc = dx0.Clone();
  BATON_EXPECT_OK(ops::LinearBackward(dy, x, w, &acc, nullptr, nullptr, /*accumulate_dx=*/true));
  std::vector<double> want = testing::ToDoubles(plain);
  const std::vector<double> start = testing::ToDoubles(dx0);
  for (size_t i = 0; i < want.size(); ++i) want[i] += start[i];
  EXPECT_TRUE(AllClose(testing::ToDoubles(acc), want, {1e-14, 1e-14}, "dx += dy·w"));
  // And the plain call really overwrote: a stale dx must not leak through.
  Tensor over = dx0.Clone();
  BATON_EXPECT_OK(ops::LinearBackward(dy, x, w, &over, nullptr, nullptr));
  EXPECT_TRUE(testing::BitwiseEqual(over, plain));
  EXPECT_FALSE(AllClose(testing::ToDoubles(acc), testing::ToDoubles(plain), {1e-6, 1e-6}, "differs"));
}

TEST(Linear, F32AgreesWithF64) {
  std::mt19937_64 rng(4);
  const int64_t n = 19, in = 37, out = 23;
  Tensor x = testing::RandomTensor({n, in}, DType::kF64, rng);
  Tensor w = testing::RandomTensor({out, in}, DType::kF64, rng);
  Tensor dy = testing::RandomTensor({n, out}, DType::kF64, rng);
  Tensor y64 = Tensor::Empty({n, out}, DType::kF64), y32 = Tensor::Empty({n, out}, DType::kF32);
  BATON_EXPECT_OK(ops::Linear(x, w, nullptr, y64));
  BATON_EXPECT_OK(ops::Linear(testing::Convert(x, DType::kF32), testing::Convert(w, DType::kF32), nullptr, y32));
  // Inputs rounded to f32 (2^-24 relative) over 37-term sums of magnitude <= 37.
  EXPECT_TRUE(AllClose(y32, y64, {2e-5, 1e-5}, "y"));
  Tensor dx64 = Tensor::Empty({n, in}, DType::kF64), dx32 = Tensor::Empty({n, in}, DType::kF32);
  Tensor dw64 = Tensor::Zeros({out, in}, DType::kF64), dw32 = Tensor::Zeros({out, in}, DType::kF32);
  BATON_EXPECT_OK(ops::LinearBackward(dy, x, w, &dx64, &dw64, nullptr));
  BATON_EXPECT_OK(ops::LinearBackward(testing::Convert(dy, DType::kF32), testing::Convert(x, DType::kF32),
                      testing::Convert(w, DType::kF32), &dx32, &dw32, nullptr));
  EXPECT_TRUE(AllClose(dx32, dx64, {2e-5, 1e-5}, "dx"));
  EXPECT_TRUE(AllClose(dw32, dw64, {2e-5, 1e-5}, "dw"));
}

TEST(Linear, ShapeMismatchIsAnInvalidArgumentNamingTheShapes) {
  Tensor x = Tensor::Zeros({4, 3}, DType::kF32);
  Tensor w = Tensor::Zeros({5, 2}, DType::kF32);
  Tensor y = Tensor::Zeros({4, 5}, DType::kF32);
  const absl::Status st = ops::Linear(x, w, nullptr, y);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::ContainsRegex("Linear: x f32\\[4, 3\\].*does not match w"));
}

}  // namespace
}  // namespace baton
