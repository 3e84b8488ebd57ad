// Helpers of the table-driven GPU parity test (op_parity_gpu_test.cc): the
// per-dtype tolerance, checks that return an AssertionResult naming the op,
// dtype and shape, and the random sizes and ids the cases draw. Included
// only where BATON_HAVE_CUDA is defined.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/cuda_allocator.h"
#include "runtime/tensor.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/op_test_util.h"

namespace baton::testing::parity {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using testing::AllClose;
using testing::Input;
using testing::RoundBf16;
using testing::ToDevice;
using testing::ToDeviceI32;
using testing::ToHost;
using testing::Tolerance;

constexpr DType kF32 = DType::kF32;

// The dtype's tolerance for an output summed over k terms.
inline Tolerance Tol(DType t, int64_t k = 0) {
  const Tolerance base = t == kF32 ? Tolerance{1e-5, 1e-5} : Tolerance{1e-2, 1e-2};
  return {base.atol + 2e-6 * static_cast<double>(k), base.rtol};
}
// Statistics and losses are f32 on both sides, from the same values.
constexpr Tolerance kStat{1e-5, 1e-4};

#define PARITY_OK(expr)                                                          \
  do {                                                                           \
    const absl::Status parity_st_ = (expr);                                      \
    if (!parity_st_.ok()) return AssertionFailure() << #expr << ": " << parity_st_; \
  } while (0)
#define PARITY_CHECK(cond)                    \
  do {                                        \
    AssertionResult parity_r_ = (cond);       \
    if (!parity_r_) return parity_r_;         \
  } while (0)

template <typename... D>
inline std::string At(const char* what, DType t, D... dims) {
  std::string s = absl::StrCat(what, " ", DTypeName(t), " at");
  ((s += absl::StrCat(" ", dims)), ...);
  return s;
}

inline Tensor Dev(const Shape& s, DType t) { return Tensor::Empty(s, t, DefaultCudaAllocator()); }
inline Tensor Host(const Shape& s) { return Tensor::Empty(s, kF32); }
// A size drawn per run in [lo, hi]: the shapes nobody chose.
inline int64_t Drawn(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}
// Ids in [0, hi], every fifth -1 (ignored by the losses).
inline Tensor Ids(int64_t n, int64_t hi, std::mt19937_64& rng, bool ignore_some) {
  Tensor t = Tensor::Empty({n}, DType::kI32);
  std::uniform_int_distribution<int64_t> id(0, hi);
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = ignore_some && i % 5 == 4 ? -1 : static_cast<int32_t>(id(rng));
  return t;
}

}  // namespace baton::testing::parity
