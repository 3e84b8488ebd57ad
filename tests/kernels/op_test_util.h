// Helpers shared by the op-table tests (tests/kernels/*_test.cc): seeded
// random tensors (never zeros), conversion to doubles, an all-close checker
// with the STYLE.md tolerance atol + rtol·|ref| that reports the worst index,
// and central finite differences for gradient checks in double.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/tensor.h"

// An op's Status in a test: a failure names the call and the status.
#define BATON_EXPECT_OK(expr)                                          \
  do {                                                                 \
    const ::absl::Status baton_test_st_ = (expr);                      \
    EXPECT_TRUE(baton_test_st_.ok()) << #expr << ": " << baton_test_st_; \
  } while (0)

namespace baton::testing {

struct Tolerance {
  double atol;
  double rtol;
};

// Uniform in ±[lo, hi]: magnitudes bounded away from zero, random signs.
inline Tensor RandomTensor(const Shape& shape, DType dtype, std::mt19937_64& rng, double lo = 0.1,
                           double hi = 1.0) {
  Tensor t = Tensor::Empty(shape, dtype);
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution sign(0.5);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    const double x = sign(rng) ? mag(rng) : -mag(rng);
    if (dtype == DType::kF32) {
      t.data<float>()[i] = static_cast<float>(x);
    } else {
      t.data<double>()[i] = x;
    }
  }
  return t;
}

inline std::vector<double> ToDoubles(const Tensor& t) {
  std::vector<double> out(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i)
    out[i] = t.dtype() == DType::kF32 ? static_cast<double>(t.data<float>()[i])
                                      : t.data<double>()[i];
  return out;
}

// Same values in another float dtype (f64 -> f32 rounds).
inline Tensor Convert(const Tensor& t, DType dtype) {
  Tensor out = Tensor::Empty(t.shape(), dtype);
  const std::vector<double> v = ToDoubles(t);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::kF32) {
      out.data<float>()[i] = static_cast<float>(v[i]);
    } else {
      out.data<double>()[i] = v[i];
    }
  }
  return out;
}

inline Tensor FromDoubles(const std::vector<double>& v, const Shape& shape) {
  Tensor t = Tensor::Empty(shape, DType::kF64);
  for (size_t i = 0; i < v.size(); ++i) t.data<double>()[i] = v[i];
  return t;
}

// Passes when |got − ref| <= atol + rtol·|ref| everywhere; on failure names
// the worst element (largest error / budget), both values and the budget.
inline ::testing::AssertionResult AllClose(const std::vector<double>& got,
                                           const std::vector<double>& ref, Tolerance tol,
                                           const std::string& what = "") {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure()
           << what << ": size " << got.size() << " vs reference " << ref.size();
  size_t worst = 0;
  double worst_ratio = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double budget = tol.atol + tol.rtol * std::fabs(ref[i]);
    const double err = std::fabs(got[i] - ref[i]);
    const double ratio = std::isnan(err) ? INFINITY : err / budget;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  if (worst_ratio <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": worst index " << worst << " got " << absl::StrCat(got[worst])
         << " ref " << absl::StrCat(ref[worst]) << " error/budget " << worst_ratio
         << " (atol " << tol.atol << ", rtol " << tol.rtol << ")";
}

inline ::testing::AssertionResult AllClose(const Tensor& got, const Tensor& ref, Tolerance tol,
                                           const std::string& what = "") {
  return AllClose(ToDoubles(got), ToDoubles(ref), tol, what);
}

// True when the two tensors hold the same bits.
inline bool BitwiseEqual(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Σ a ∘ r in double: the scalar objective L = Σ out ∘ R of gradient checks.
inline double Dot(const Tensor& a, const Tensor& r) {
  const std::vector<double> x = ToDoubles(a), y = ToDoubles(r);
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

// Central differences (L(x+h) − L(x−h)) / 2h for every element of the f64
// tensor x, which `loss` reads; x is restored afterwards.
inline std::vector<double> NumericGradient(Tensor& x, const std::function<double()>& loss,
                                           double h = 1e-6) {
  std::vector<double> grad(x.numel());
  double* p = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double up = loss();
    p[i] = saved - h;
    const double down = loss();
    p[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

// Gradient-check budget in double with h = 1e-6: truncation error is
// O(h²)·|f'''| ≈ 1e-12 and cancellation error ≈ ulp(L)/h ≈ 1e-9 for |L| ~ 10.
inline constexpr Tolerance kGradTol{1e-7, 1e-6};

}  // namespace baton::testing
