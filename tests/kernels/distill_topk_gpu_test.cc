// GPU parity of the offline distillation loss (kernels/cuda/distill_topk.h)
// against the CPU reference (kernels/cpu/distill_topk.h) on random student
// logits and a random teacher's top-k over the whole vocabulary (3 shards;
// the student holds shard 1, so kept ids fall in and out of it): odd and
// aligned shapes (N 1, 19, 111; V_local 7, 989, 16000; k 1, 7, 64, and the
// whole vocabulary at V_local 7, where rest_lse is −inf), f32 and bf16
// logits (rounded to bf16 on the CPU side first), T = 1, 2 and 0.5 (powers
// of two: x/T is exact in both), targets in and out of the shard and
// ignored. Each pass is fed the CPU's inputs, so errors do not compound; the
// last checks run the runtime entry with rows uploaded by TeacherTopKUpload.
// Tolerances (|got − ref| <= atol + rtol·|ref|), as for the online loss
// (distill_loss_gpu_test.cc, whose reasoning holds here):
//   max, target logit and kept logits: exact (copies of the same values);
//   Σexp sums: rtol 2e-5 (f32 sums of ≤ 16000 terms in ≤ 1 vs double);
//   losses: atol 1e-4, rtol 1e-5 (f32 logs of |x| <= ~20 cancel in the KL);
//   dstudent: f32 atol 1e-6, rtol 2e-5; bf16 atol 1e-6, rtol 8e-3.
// Skips with "no GPU" where CudaDeviceCount() == 0; compiles to a skip
// without BATON_HAVE_CUDA.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/distill_topk.h"
#include "kernels/gpu.h"
#include "runtime/distill_offline.h"
#include "runtime/distill_offline_upload.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/distill_topk.h"
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
  int64_t n, v, k, vocab_start;
  Tensor student;  // (n, v) f32, rounded to what the dtype holds
  TeacherTopK top; // (n, k) over the vocabulary [0, 3v), f32
  Tensor targets;  // (n) i32
};

// Shard 1 of 3 (vocab_start = v); every fifth row ignored, row 0 hits this shard.
Case MakeCase(int64_t n, int64_t v, int64_t k, DType t, double temp, std::mt19937_64& rng) {
  Case c{n, v, k, v, {}, {}, {}};
  const Tensor s = RandomTensor({n, v}, DType::kF32, rng, 0.05, 6.0);
  c.student = t == DType::kBF16 ? RoundBf16(s) : s;
  const Tensor teacher = RandomTensor({n, 3 * v}, DType::kF32, rng, 0.05, 6.0);
  absl::StatusOr<TeacherTopK> top = TeacherTopKOf(teacher, k, temp);
  BATON_CHECK(top.ok());
  c.top = *std::move(top);
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
  return std::string(what) + " n=" + std::to_string(c.n) + " v=" + std::to_string(c.v) + " k=" +
         std::to_string(c.k) + " " + DTypeName(t) + " T=" + std::to_string(temp);
}

// Row r of a (rows, n) tensor as doubles.
std::vector<double> Row(const Tensor& t, int64_t r) {
  const int64_t n = t.dim(1);
  std::vector<double> all = testing::ToDoubles(t);
  return std::vector<double>(all.begin() + r * n, all.begin() + (r + 1) * n);
}

class DistillTopKGpu : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, DistillTopKGpu, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

// One case through every pass, CPU and GPU fed the same inputs.
void CheckPasses(const Case& c, DType t, double temp) {
  const int64_t n = c.n, v = c.v, k = c.k;
  const cpu::DistillCoeffs co{0.6, temp};
  const double scale = 0.37;
  const float* s = c.student.data<float>();
  const int32_t* ids = c.top.indices.data<int32_t>();
  const int32_t* y = c.targets.data<int32_t>();
  Tensor max = Tensor::Empty({n}, DType::kF32), sums = Tensor::Empty({cpu::kOfflineSums + k, n}, DType::kF32),
         losses = Tensor::Empty({3, n}, DType::kF32), d = Tensor::Empty({n, v}, DType::kF32);
  cpu::OfflineRowMax(s, n, v, max.data<float>());
  cpu::OfflineRowSums(s, ids, y, c.vocab_start, n, v, k, temp, max.data<float>(), sums.data<float>());
  cpu::OfflineRowLoss(c.top.values.data<float>(), c.top.rest_lse.data<float>(), y, n, k, max.data<float>(),
                      sums.data<float>(), co, losses.data<float>());
  cpu::OfflineBackward(s, c.top.values.data<float>(), ids, c.top.rest_lse.data<float>(), y, c.vocab_start, n, v, k,
                       max.data<float>(), sums.data<float>(), co, scale, d.data<float>());

  cudaStream_t stream = cuda::CurrentStream();
  const float tf = static_cast<float>(temp), af = static_cast<float>(co.alpha);
  Tensor sd = ToDevice(c.student, t), yd = testing::ToDeviceI32(c.targets), idd = testing::ToDeviceI32(c.top.indices);
  const Tensor vd = ToDevice(c.top.values, DType::kF32), rd = ToDevice(c.top.rest_lse, DType::kF32);
  Tensor max_d = DeviceF32({n}), sums_d = DeviceF32({cpu::kOfflineSums + k, n}), losses_d = DeviceF32({3, n}),
         norm_d = DeviceF32({2, n});
  ASSERT_TRUE(cuda::OfflineRowMax(Tag(t), sd.raw(), n, v, F32(max_d), stream).ok());
  ASSERT_TRUE(AllClose(ToHost(max_d), max, kExact, Name("OfflineRowMax", c, t, temp)));
  const Tensor max_in = ToDevice(max, DType::kF32);
  ASSERT_TRUE(cuda::OfflineRowSums(Tag(t), sd.raw(), I32(idd), I32(yd), c.vocab_start, n, v, k, tf, F32(max_in),
                                   F32(sums_d), stream).ok());
  const Tensor got_sums = ToHost(sums_d);
  for (int r = 0; r < 3; ++r)
    ASSERT_TRUE(AllClose(Row(got_sums, r), Row(sums, r), kSum, Name("OfflineRowSums Σexp", c, t, temp)));
  for (int64_t r = 3; r < cpu::kOfflineSums + k; ++r)
    ASSERT_TRUE(AllClose(Row(got_sums, r), Row(sums, r), kExact, Name("OfflineRowSums picked logits", c, t, temp)));
  const Tensor sums_in = ToDevice(sums, DType::kF32);
  ASSERT_TRUE(cuda::OfflineRowLoss(F32(vd), F32(rd), I32(yd), n, k, F32(max_in), F32(sums_in), af, tf, F32(losses_d),
                                   F32(norm_d), stream).ok());
  ASSERT_TRUE(AllClose(ToHost(losses_d), losses, kLoss, Name("OfflineRowLoss", c, t, temp)));
  Tensor dd = Tensor::Empty({n, v}, t, DefaultCudaAllocator());
  ASSERT_TRUE(cuda::OfflineBackward(Tag(t), sd.raw(), F32(vd), I32(idd), I32(yd), c.vocab_start, n, v, k, F32(max_in),
                                    F32(sums_in), F32(norm_d), af, tf, static_cast<float>(scale), dd.raw(), stream)
                  .ok());
  ASSERT_TRUE(AllClose(ToHost(dd), d, GradTol(t), Name("OfflineBackward", c, t, temp)));
  // In place, as the model runs it.
  ASSERT_TRUE(cuda::OfflineBackward(Tag(t), sd.raw(), F32(vd), I32(idd), I32(yd), c.vocab_start, n, v, k, F32(max_in),
                                    F32(sums_in), F32(norm_d), af, tf, static_cast<float>(scale), sd.raw(), stream)
                  .ok());
  ASSERT_TRUE(AllClose(ToHost(sd), d, GradTol(t), Name("OfflineBackward in place", c, t, temp)));
}

TEST_P(DistillTopKGpu, EveryPassMatchesTheCpuKernel) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(31);
  for (double temp : {1.0, 2.0, 0.5}) {
    for (int64_t n : {1, 19, 111}) {
      for (int64_t v : {7, 989, 16000}) {
        for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{64}, 3 * v}) {
          if (k > 3 * v || (k == 3 * v && v > 7)) continue;  // the whole vocabulary: small v only
          CheckPasses(MakeCase(n, v, k, t, temp, rng), t, temp);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// The runtime entry on rows uploaded through pinned memory (two steps, so
// both host sets are used) gives the CPU's sums and gradient.
TEST_P(DistillTopKGpu, RuntimeEntryMatchesCpu) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(32);
  absl::StatusOr<std::unique_ptr<TeacherTopKUpload>> upload = TeacherTopKUpload::Create();
  ASSERT_TRUE(upload.ok()) << upload.status();
  for (int step = 0; step < 2; ++step) {
    const int64_t n = 37, v = 3 * 989, k = 32;
    const DistillLossOptions o{0.5, 2.0};
    std::vector<Case> cases;
    std::vector<TeacherTopK> host;
    for (int mb = 0; mb < 2; ++mb) {
      cases.push_back(MakeCase(n, v / 3, k, t, o.temperature, rng));
      Case& c = cases.back();
      c.student = RandomTensor({n, v}, DType::kF32, rng, 0.05, 6.0);  // the whole vocabulary here
      if (t == DType::kBF16) c.student = RoundBf16(c.student);
      host.push_back(c.top);
    }
    absl::StatusOr<std::vector<TeacherTopK>> dev = (*upload)->Upload(host, v);
    ASSERT_TRUE(dev.ok()) << dev.status();
    for (int mb = 0; mb < 2; ++mb) {
      const Case& c = cases[mb];
      Tensor d = Tensor::Empty({n, v}, DType::kF32);
      absl::StatusOr<DistillLossSums> ref = OfflineDistillLoss(c.student, c.top, c.targets, o, 0.25, &d);
      ASSERT_TRUE(ref.ok()) << ref.status();
      Tensor sd = ToDevice(c.student, t), yd = testing::ToDeviceI32(c.targets);
      absl::StatusOr<DistillLossSums> got = OfflineDistillLoss(sd, (*dev)[mb], yd, o, 0.25, &sd);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_NEAR(got->loss, ref->loss, 1e-4 * n + 1e-5 * ref->loss);
      EXPECT_NEAR(got->ce, ref->ce, 1e-4 * n + 1e-5 * ref->ce);
      EXPECT_NEAR(got->kl, ref->kl, 1e-4 * n + 1e-5 * ref->kl);
      EXPECT_TRUE(AllClose(ToHost(sd), d, GradTol(t), "runtime OfflineDistillLoss dstudent, in place"));
    }
  }
}

// Ids the kernels cannot check are refused at upload, naming micro-batch and row.
TEST(DistillTopKGpuUpload, RefusesRepeatedOrOutOfRangeIds) {
  REQUIRE_GPU();
  std::mt19937_64 rng(33);
  absl::StatusOr<std::unique_ptr<TeacherTopKUpload>> upload = TeacherTopKUpload::Create();
  ASSERT_TRUE(upload.ok()) << upload.status();
  Case c = MakeCase(5, 50, 4, DType::kF32, 1.0, rng);
  std::vector<TeacherTopK> host{c.top, c.top};
  host[1].indices = c.top.indices.Clone();
  host[1].indices.data<int32_t>()[3 * 4 + 1] = host[1].indices.data<int32_t>()[3 * 4];
  absl::StatusOr<std::vector<TeacherTopK>> dev = (*upload)->Upload(host, 150);
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dev.status().message()), ::testing::HasSubstr("micro-batch 1: OfflineDistillLoss: row 3"));
  host[1].indices.data<int32_t>()[3 * 4 + 1] = 150;
  EXPECT_FALSE((*upload)->Upload(host, 150).ok());
}

// The checkers fail one step past their budget.
TEST(DistillTopKGpuCheckers, FailOneStepPastTheirTolerance) {
  REQUIRE_GPU();
  Tensor ref = Tensor::Empty({1}, DType::kF32), got = Tensor::Empty({1}, DType::kF32);
  ref.data<float>()[0] = 5.0f;
  got.data<float>()[0] = 5.0f + static_cast<float>(2 * (kLoss.atol + kLoss.rtol * 5.0));
  EXPECT_FALSE(AllClose(got, ref, kLoss, "loss 2 budgets off"));
  got.data<float>()[0] = std::nextafter(5.0f, 6.0f);
  EXPECT_FALSE(AllClose(got, ref, kExact, "picked logit one ulp off"));
  got.data<float>()[0] = 5.0f * static_cast<float>(1 + 2 * GradTol(DType::kF32).rtol);
  EXPECT_FALSE(AllClose(got, ref, GradTol(DType::kF32), "f32 grad 2 budgets off"));
}

}  // namespace
}  // namespace baton

#else  // no CUDA in this build

TEST(DistillTopKGpu, NeedsCudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif
