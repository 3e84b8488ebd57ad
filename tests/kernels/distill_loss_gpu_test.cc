// GPU parity of the distillation loss kernels (kernels/cuda/distill_loss.h)
// against the CPU reference (kernels/cpu/distill_loss.h) on random student
// and teacher logits of odd and aligned shapes (N 1, 19, 111; V 1, 989,
// 16000), f32 and bf16 logits (rounded to bf16 on the CPU side first, so
// both see the same values), T = 1, 2 and 0.5 (powers of two: x/T is exact
// in both), targets in and out of the shard and ignored. Each kernel is fed
// the CPU's inputs, so errors do not compound; a last check runs the whole
// runtime DistillLoss on the device. Tolerances (|got − ref| <= atol + rtol·|ref|):
//   maxes: exact (a max of the same values, times a power of two);
//   Σexp sums: rtol 2e-5 (f32 sums of ≤ 16000 terms in ≤ 1, strided-then-tree
//     order, vs the CPU's double sum), target logit exact;
//   Σ p(t − s)/T: 2e-5 · Σ|terms| of the row (a signed sum: its error scales
//     with the magnitudes summed, not with the result);
//   losses: atol 1e-4, rtol 1e-5 (f32 lse's of |x| <= ~20 cancel in the KL);
//   dstudent: f32 atol 1e-6, rtol 2e-5; bf16 atol 1e-6, rtol 8e-3 (one bf16
//     rounding is 2^-9 relative, plus the f32 error above).
// Skips with "no GPU" where CudaDeviceCount() == 0; compiles to a skip
// without BATON_HAVE_CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/distill_loss.h"
#include "kernels/gpu.h"
#include "runtime/distill_loss.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/distill_loss.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#include "tests/kernels/gpu_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::RandomTensor;
using testing::RoundBf16;
using testing::ToDevice;
using testing::ToHost;
using testing::Tolerance;

constexpr Tolerance kExact{0, 0};
constexpr Tolerance kSum{0, 2e-5};
constexpr Tolerance kLoss{1e-4, 1e-5};
Tolerance GradTol(DType t) { return t == DType::kF32 ? Tolerance{1e-6, 2e-5} : Tolerance{1e-6, 8e-3}; }

cuda::Float Tag(DType t) { return t == DType::kF32 ? cuda::Float::kF32 : cuda::Float::kBF16; }
float* F32(const Tensor& t) { return static_cast<float*>(t.raw()); }
const int32_t* I32(const Tensor& t) { return static_cast<const int32_t*>(t.raw()); }
Tensor DeviceF32(const Shape& s) { return Tensor::Empty(s, DType::kF32, DefaultCudaAllocator()); }

struct Case {
  int64_t n, v, vocab_start;
  Tensor student, teacher;  // (n, v) f32, rounded to what the dtype holds
  Tensor targets;           // (n) i32
};
// Shard 1 of 3 (vocab_start = v); every fifth row ignored, row 0 hits this shard.
Case MakeCase(int64_t n, int64_t v, DType t, std::mt19937_64& rng) {
  Case c{n, v, v, {}, {}, {}};
  Tensor s = RandomTensor({n, v}, DType::kF32, rng, 0.05, 6.0), te = RandomTensor({n, v}, DType::kF32, rng, 0.05, 6.0);
  c.student = t == DType::kBF16 ? RoundBf16(s) : s;
  c.teacher = t == DType::kBF16 ? RoundBf16(te) : te;
  c.targets = Tensor::Empty({n}, DType::kI32);
  std::uniform_int_distribution<int64_t> id(0, 3 * v - 1);
  for (int64_t r = 0; r < n; ++r) {
    int64_t target = r % 5 == 4 ? -1 : id(rng);
    if (r == 0) target = c.vocab_start + (v - 1) / 2;
    c.targets.data<int32_t>()[r] = static_cast<int32_t>(target);
  }
  return c;
}

std::string Name(const char* what, const Case& c, DType t, double temp) {
  return std::string(what) + " n=" + std::to_string(c.n) + " v=" + std::to_string(c.v) + " " + DTypeName(t) +
         " T=" + std::to_string(temp);
}

// Row k of a (rows, n) tensor as doubles.
std::vector<double> Row(const Tensor& t, int k) {
  const int64_t n = t.dim(1);
  std::vector<double> all = testing::ToDoubles(t);
  return std::vector<double>(all.begin() + k * n, all.begin() + (k + 1) * n);
}

// Σ_j |exp(t_j/T − mt)·(t_j − s_j)/T| per row: the budget scale of the signed sum.
std::vector<double> SignedSumScale(const Case& c, double temp, const Tensor& max) {
  std::vector<double> out(c.n);
  for (int64_t r = 0; r < c.n; ++r) {
    const double mt = max.data<float>()[cpu::kMaxTeacherT * c.n + r];
    double a = 0;
    for (int64_t j = 0; j < c.v; ++j) {
      const double s = c.student.data<float>()[r * c.v + j], t = c.teacher.data<float>()[r * c.v + j];
      a += std::fabs(std::exp(t / temp - mt) * (t - s) / temp);
    }
    out[r] = a;
  }
  return out;
}

class DistillLossGpu : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, DistillLossGpu, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST_P(DistillLossGpu, EveryPassMatchesTheCpuKernel) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(21);
  cudaStream_t stream = cuda::CurrentStream();
  for (double temp : {1.0, 2.0, 0.5}) {
    const cpu::DistillCoeffs co{0.6, temp};
    for (int64_t n : {1, 19, 111}) {
      for (int64_t v : {1, 989, 16000}) {
        Case c = MakeCase(n, v, t, rng);
        const float* s = c.student.data<float>();
        const float* te = c.teacher.data<float>();
        const int32_t* y = c.targets.data<int32_t>();
        Tensor max = Tensor::Empty({3, n}, DType::kF32), sums = Tensor::Empty({5, n}, DType::kF32),
               losses = Tensor::Empty({3, n}, DType::kF32), d = Tensor::Empty({n, v}, DType::kF32);
        const double scale = 0.37;
        cpu::DistillRowMax(s, te, n, v, temp, max.data<float>());
        cpu::DistillRowSums(s, te, y, c.vocab_start, n, v, temp, max.data<float>(), sums.data<float>());
        cpu::DistillRowLoss(y, n, max.data<float>(), sums.data<float>(), co, losses.data<float>());
        cpu::DistillBackward(s, te, y, c.vocab_start, n, v, max.data<float>(), sums.data<float>(), co, scale,
                             d.data<float>());

        Tensor sd = ToDevice(c.student, t), td = ToDevice(c.teacher, t), yd = testing::ToDeviceI32(c.targets);
        Tensor max_d = DeviceF32({3, n}), sums_d = DeviceF32({5, n}), losses_d = DeviceF32({3, n});
        ASSERT_TRUE(cuda::DistillRowMax(Tag(t), sd.raw(), td.raw(), n, v, static_cast<float>(temp), F32(max_d), stream).ok());
        ASSERT_TRUE(AllClose(ToHost(max_d), max, kExact, Name("DistillRowMax", c, t, temp)));
        const Tensor max_in = ToDevice(max, DType::kF32);
        ASSERT_TRUE(cuda::DistillRowSums(Tag(t), sd.raw(), td.raw(), I32(yd), c.vocab_start, n, v,
                                         static_cast<float>(temp), F32(max_in), F32(sums_d), stream).ok());
        const Tensor got_sums = ToHost(sums_d);
        for (int k : {cpu::kSumStudentT, cpu::kSumTeacherT, cpu::kSumStudent})
          ASSERT_TRUE(AllClose(Row(got_sums, k), Row(sums, k), kSum, Name("DistillRowSums Σexp", c, t, temp)));
        ASSERT_TRUE(AllClose(Row(got_sums, cpu::kSumTarget), Row(sums, cpu::kSumTarget), kExact,
                             Name("DistillRowSums target", c, t, temp)));
        const std::vector<double> w_got = Row(got_sums, cpu::kSumTeacherDiff), w_ref = Row(sums, cpu::kSumTeacherDiff),
                                  w_scale = SignedSumScale(c, temp, max);
        for (int64_t r = 0; r < n; ++r)
          ASSERT_LE(std::fabs(w_got[r] - w_ref[r]), 2e-5 * w_scale[r] + 1e-30)
              << Name("DistillRowSums Σp(t−s)", c, t, temp) << " row " << r;
        const Tensor sums_in = ToDevice(sums, DType::kF32);
        ASSERT_TRUE(cuda::DistillRowLoss(I32(yd), n, F32(max_in), F32(sums_in), static_cast<float>(co.alpha),
                                         static_cast<float>(temp), F32(losses_d), stream).ok());
        ASSERT_TRUE(AllClose(ToHost(losses_d), losses, kLoss, Name("DistillRowLoss", c, t, temp)));
        Tensor dd = Tensor::Empty({n, v}, t, DefaultCudaAllocator());
        ASSERT_TRUE(cuda::DistillBackward(Tag(t), sd.raw(), td.raw(), I32(yd), c.vocab_start, n, v, F32(max_in),
                                          F32(sums_in), static_cast<float>(co.alpha), static_cast<float>(temp),
                                          static_cast<float>(scale), dd.raw(), stream).ok());
        ASSERT_TRUE(AllClose(ToHost(dd), d, GradTol(t), Name("DistillBackward", c, t, temp)));
        // In place, as the model runs it.
        ASSERT_TRUE(cuda::DistillBackward(Tag(t), sd.raw(), td.raw(), I32(yd), c.vocab_start, n, v, F32(max_in),
                                          F32(sums_in), static_cast<float>(co.alpha), static_cast<float>(temp),
                                          static_cast<float>(scale), sd.raw(), stream).ok());
        ASSERT_TRUE(AllClose(ToHost(sd), d, GradTol(t), Name("DistillBackward in place", c, t, temp)));
      }
    }
  }
}

// The runtime entry on device tensors (all passes chained on the GPU) gives
// the CPU's sums and gradient.
TEST_P(DistillLossGpu, RuntimeEntryMatchesCpu) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(22);
  for (int64_t v : {989, 16000}) {
    Case c = MakeCase(37, v, t, rng);
    c.vocab_start = 0;
    for (int64_t r = 0; r < c.n; ++r) {  // whole vocabulary here: targets in [0, v)
      int32_t& y = c.targets.data<int32_t>()[r];
      if (y >= 0) y %= static_cast<int32_t>(v);
    }
    const DistillLossOptions o{0.5, 2.0};
    Tensor d = Tensor::Empty({c.n, v}, DType::kF32);
    absl::StatusOr<DistillLossSums> ref = DistillLoss(c.student, c.teacher, c.targets, o, 0.25, &d);
    ASSERT_TRUE(ref.ok()) << ref.status();
    Tensor sd = ToDevice(c.student, t), td = ToDevice(c.teacher, t), yd = testing::ToDeviceI32(c.targets);
    Tensor dd = Tensor::Empty({c.n, v}, t, DefaultCudaAllocator());
    absl::StatusOr<DistillLossSums> got = DistillLoss(sd, td, yd, o, 0.25, &dd);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_NEAR(got->loss, ref->loss, 1e-4 * c.n + 1e-5 * ref->loss);
    EXPECT_NEAR(got->ce, ref->ce, 1e-4 * c.n + 1e-5 * ref->ce);
    EXPECT_NEAR(got->kl, ref->kl, 1e-4 * c.n + 1e-5 * ref->kl);
    EXPECT_TRUE(AllClose(ToHost(dd), d, GradTol(t), "runtime DistillLoss dstudent"));
  }
}

// The checkers fail one step past their budget.
TEST(DistillLossGpuCheckers, FailOneStepPastTheirTolerance) {
  REQUIRE_GPU();
  Tensor ref = Tensor::Empty({1}, DType::kF32), got = Tensor::Empty({1}, DType::kF32);
  ref.data<float>()[0] = 5.0f;
  got.data<float>()[0] = 5.0f + static_cast<float>(2 * (kLoss.atol + kLoss.rtol * 5.0));
  EXPECT_FALSE(AllClose(got, ref, kLoss, "loss 2 budgets off"));
  got.data<float>()[0] = std::nextafter(5.0f, 6.0f);
  EXPECT_FALSE(AllClose(got, ref, kExact, "max one ulp off"));
  got.data<float>()[0] = 5.0f * static_cast<float>(1 + 2 * GradTol(DType::kBF16).rtol);
  EXPECT_FALSE(AllClose(got, ref, GradTol(DType::kBF16), "bf16 grad 2 budgets off"));
}

}  // namespace
}  // namespace baton

#else  // no CUDA in this build

TEST(DistillLossGpu, NeedsCudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif
