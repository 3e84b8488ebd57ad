// The CUDA backend beyond op-for-op parity (that is op_parity_gpu_test.cc):
// each attention backend forced in turn (our FlashAttention-2 kernels and
// cuDNN, and the rule that picks between them), GEMM autotuning keeping the
// result, unaligned views taking the kernels' element path, the entry checks
// on device tensors, and the conversion of CUDA, cuBLAS and cuDNN codes into
// Status with the call and file:line (no GPU needed for those). Same
// tolerances as the parity test. Skips without a GPU; one skip without CUDA.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "absl/strings/str_cat.h"
#include "kernels/cpu/convert.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/cudnn_check.h"
#include "kernels/cuda/gemm.h"
#include "runtime/cuda_allocator.h"
#include "tests/kernels/gpu_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::Input;
using testing::RoundBf16;
using testing::ToDevice;
using testing::ToDeviceI32;
using testing::ToHost;
using testing::Tolerance;

constexpr Tolerance kF32{1e-5, 1e-5};
constexpr Tolerance kBf16{1e-2, 1e-2};
Tolerance Tol(DType t) { return t == DType::kF32 ? kF32 : kBf16; }

class CudaOps : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, CudaOps, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

// Autotuning times candidate algorithms on the call's own operands: the
// call must still add alpha·A·B to C exactly once (beta = 1), whichever
// algorithm wins. Shapes unused elsewhere in this binary, so each is tuned.
TEST_P(CudaOps, GemmAutotuneKeepsTheResult) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(11);
  cuda::SetGemmAutotune(true);
  for (int64_t m : {37, 1000}) for (int64_t n : {53, 1024}) for (int64_t k : {71, 2048}) {
    Tensor a = Input({m, k}, t, rng), b = Input({n, k}, t, rng);
    Tensor c = Input({m, n}, DType::kF32, rng);
    Tensor dc = ToDevice(c, DType::kF32);
    BATON_EXPECT_OK(ops::MatMul(a, false, b, true, c, 1.0f, 1.0f));
    BATON_EXPECT_OK(ops::MatMul(ToDevice(a, t), false, ToDevice(b, t), true, dc, 1.0f, 1.0f));
    EXPECT_TRUE(AllClose(ToHost(dc), c, {2e-6 * k + 1e-5, 1e-5}, "autotuned MatMul"))
        << m << "x" << n << "x" << k;
  }
  cuda::SetGemmAutotune(false);
}

struct AttnDims { int64_t b, t, h, kv, d; };

// The op table's attention, forward and backward, against the CPU kernel on
// one shape, and a second backward bitwise equal to the first.
void CheckAttentionAgainstCpu(DType t, const AttnDims& s, std::mt19937_64& rng) {
  Tensor q = Input({s.b, s.t, s.h, s.d}, t, rng), k = Input({s.b, s.t, s.kv, s.d}, t, rng),
         v = Input({s.b, s.t, s.kv, s.d}, t, rng), dout = Input(q.shape(), t, rng);
  Tensor out = Tensor::Empty(q.shape(), DType::kF32), lse = Tensor::Empty({s.b, s.h, s.t}, DType::kF32);
  BATON_EXPECT_OK(ops::Attention(q, k, v, out, lse, nullptr));
  Tensor qd = ToDevice(q, t), kd = ToDevice(k, t), vd = ToDevice(v, t);
  Tensor outd = Tensor::Empty(q.shape(), t, DefaultCudaAllocator());
  Tensor lsed = Tensor::Empty({s.b, s.h, s.t}, DType::kF32, DefaultCudaAllocator());
  BATON_EXPECT_OK(ops::Attention(qd, kd, vd, outd, lsed, nullptr));
  const std::string where = absl::StrCat(s.b, ",", s.t, ",", s.h, ",", s.kv, ",", s.d);
  ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "attention out")) << where;
  ASSERT_TRUE(AllClose(ToHost(lsed), lse, {1e-5, 1e-5}, "lse")) << where;
  // Backward from the same (out, lse) on both sides: out rounded like the GPU's.
  Tensor out_in = t == DType::kBF16 ? RoundBf16(out) : out;
  Tensor dq = Tensor::Empty(q.shape(), DType::kF32), dk = Tensor::Empty(k.shape(), DType::kF32),
         dv = Tensor::Empty(v.shape(), DType::kF32);
  BATON_EXPECT_OK(ops::AttentionBackward(dout, q, k, v, out_in, lse, nullptr, dq, dk, dv));
  Tensor dqd = Tensor::Empty(q.shape(), t, DefaultCudaAllocator());
  Tensor dkd = Tensor::Empty(k.shape(), t, DefaultCudaAllocator()), dvd = dkd.Clone();
  BATON_EXPECT_OK(ops::AttentionBackward(ToDevice(dout, t), qd, kd, vd, ToDevice(out_in, t), ToDevice(lse, DType::kF32),
                         nullptr, dqd, dkd, dvd));
  const Tolerance tol = t == DType::kF32 ? Tolerance{2e-6 * s.t + 1e-5, 1e-4} : Tolerance{2e-2, 2e-2};
  ASSERT_TRUE(AllClose(ToHost(dqd), dq, tol, "dq")) << where;
  ASSERT_TRUE(AllClose(ToHost(dkd), dk, tol, "dk")) << where;
  ASSERT_TRUE(AllClose(ToHost(dvd), dv, tol, "dv")) << where;
  // Deterministic: a second backward gives the same bits.
  Tensor dq2 = dqd.Clone(), dk2 = dkd.Clone(), dv2 = dvd.Clone();
  BATON_EXPECT_OK(ops::AttentionBackward(ToDevice(dout, t), qd, kd, vd, ToDevice(out_in, t), ToDevice(lse, DType::kF32),
                         nullptr, dq2, dk2, dv2));
  EXPECT_TRUE(AllClose(ToHost(dq2), ToHost(dqd), {1e-30, 0}, "dq rerun")) << where;
  EXPECT_TRUE(AllClose(ToHost(dk2), ToHost(dkd), {1e-30, 0}, "dk rerun")) << where;
  EXPECT_TRUE(AllClose(ToHost(dv2), ToHost(dvd), {1e-30, 0}, "dv rerun")) << where;
}

// Sets the attention backend for one scope (the setting is process-wide).
class ScopedAttentionBackend {
 public:
  explicit ScopedAttentionBackend(cuda::AttentionBackend b) : old_(cuda::GetAttentionBackend()) {
    cuda::SetAttentionBackend(b);
  }
  ~ScopedAttentionBackend() { cuda::SetAttentionBackend(old_); }

 private:
  cuda::AttentionBackend old_;
};

TEST_P(CudaOps, AttentionForwardBackward) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(8);
  // Our kernels only: cuDNN has its own test below.
  ScopedAttentionBackend flash(cuda::AttentionBackend::kFlash);
  // bf16 with d 64/128 runs FlashAttention-2 (64-row tiles): odd t cover
  // partial tiles, t = 1 a lone row, 989 many tiles; h/kv 1, 2, 3 and 4.
  for (AttnDims s : {AttnDims{1, 1, 1, 1, 8}, AttnDims{2, 19, 4, 2, 64}, AttnDims{1, 111, 6, 2, 128},
                     AttnDims{1, 300, 4, 1, 64}, AttnDims{1, 1, 2, 1, 64}, AttnDims{2, 1, 2, 2, 128},
                     AttnDims{1, 19, 3, 1, 128}, AttnDims{2, 111, 4, 4, 64}, AttnDims{1, 989, 4, 2, 64},
                     AttnDims{1, 989, 2, 1, 128}}) {
    const bool flash = cuda::AttentionUsesFlash(t == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32,
                                                {s.b, s.t, s.h, s.kv, s.d});
    EXPECT_EQ(flash, t == DType::kBF16 && (s.d == 64 || s.d == 128));
    CheckAttentionAgainstCpu(t, s, rng);
    if (HasFatalFailure()) return;
  }
}

// The op table with cuDNN forced (errors are returned, never a silent
// fallback to FA2): the same shapes and tolerances as FA2, odd t included.
TEST(CudaOpsCudnn, AttentionMatchesCpuThroughTheOpTable) {
  REQUIRE_GPU();
  if (!cuda::CudnnAttentionBuilt()) GTEST_SKIP() << "built without cuDNN";
  ScopedAttentionBackend cudnn(cuda::AttentionBackend::kCudnn);
  std::mt19937_64 rng(18);
  // Fewer shapes than FA2's: every new shape is a plan build (NVRTC) of its own.
  for (AttnDims s : {AttnDims{2, 19, 4, 2, 64}, AttnDims{1, 111, 6, 2, 128}, AttnDims{1, 1, 2, 1, 64},
                     AttnDims{2, 111, 4, 4, 64}, AttnDims{1, 989, 2, 1, 128},
                     AttnDims{2, 333, 8, 2, 64}}) {
    const cuda::AttentionDims dims{s.b, s.t, s.h, s.kv, s.d};
    ASSERT_TRUE(cuda::AttentionUsesCudnn(cuda::Float::kBF16, dims, false));
    for (bool bwd : {false, true}) {
      const absl::StatusOr<std::string> plan = cuda::CudnnAttentionPlanInfo(dims, bwd);
      ASSERT_TRUE(plan.ok()) << plan.status();
      std::printf("cudnn %s %ld,%ld,%ld,%ld,%ld: %s\n", bwd ? "bwd" : "fwd", long(s.b), long(s.t),
                  long(s.h), long(s.kv), long(s.d), plan->c_str());
    }
    CheckAttentionAgainstCpu(DType::kBF16, s, rng);
    if (HasFatalFailure()) return;
  }
}

// No GPU needed: the kAuto rule (bf16 -> cuDNN where built, both head dims
// measured; the backward only while its b·h·t² workspace is <= 4 GiB; f32
// and a forced kFlash -> ours).
TEST(CudaOpsCudnn, AutoRuleTakesCudnnForBf16WithinTheWorkspaceCap) {
  ScopedAttentionBackend automatic(cuda::AttentionBackend::kAuto);
  const bool built = cuda::CudnnAttentionBuilt();
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {4, 2048, 16, 4, 128}, true), built);
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {4, 2048, 16, 4, 128}, false), built);
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {16, 1024, 12, 12, 64}, true), built);
  // 2·1·32·16384² bytes = 16 GiB of dS workspace: the backward stays on FA2.
  EXPECT_FALSE(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {1, 16384, 32, 8, 128}, true));
  EXPECT_EQ(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {1, 16384, 32, 8, 128}, false), built);
  EXPECT_FALSE(cuda::AttentionUsesCudnn(cuda::Float::kF32, {4, 2048, 16, 4, 128}, true));
  ScopedAttentionBackend flash(cuda::AttentionBackend::kFlash);
  EXPECT_FALSE(cuda::AttentionUsesCudnn(cuda::Float::kBF16, {4, 2048, 16, 4, 128}, true));
}

// Views that start one element in are not 16-byte aligned: the kernels
// must take their element-by-element path there and agree with the CPU.
TEST_P(CudaOps, UnalignedViewsTakeTheElementPath) {
  REQUIRE_GPU();
  const DType t = GetParam();
  std::mt19937_64 rng(19);
  const int64_t n = 1001;
  Tensor a = Input({n + 1}, t, rng), b = Input({n + 1}, t, rng, 0.1, 4.0);
  Tensor ad = ToDevice(a, t), bd = ToDevice(b, t);
  Tensor av = a.Slice(1, n), bv = b.Slice(1, n), adv = ad.Slice(1, n), bdv = bd.Slice(1, n);
  Tensor out = Tensor::Empty({n}, DType::kF32);
  Tensor outd_full = Tensor::Empty({n + 1}, t, DefaultCudaAllocator());
  Tensor outd = outd_full.Slice(1, n);
  BATON_EXPECT_OK(ops::Add(av, bv, out));
  BATON_EXPECT_OK(ops::Add(adv, bdv, outd));
  ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "Add unaligned"));
  BATON_EXPECT_OK(ops::SwiGlu(bv, av, out));
  BATON_EXPECT_OK(ops::SwiGlu(bdv, adv, outd));
  ASSERT_TRUE(AllClose(ToHost(outd), out, Tol(t), "SwiGlu unaligned"));
  BATON_EXPECT_OK(ops::Scale(av, 0.5f));
  BATON_EXPECT_OK(ops::Scale(adv, 0.5f));
  ASSERT_TRUE(AllClose(ToHost(adv), av, Tol(t), "Scale unaligned"));
  const Tensor back = ToHost(bdv);
  EXPECT_NEAR(ops::SumSquares(bdv).value(), ops::SumSquares(back).value(), 1e-9 * n + 1e-6 * ops::SumSquares(back).value());
}

// The entry checks on device tensors: a mixed-device call and a CUDA
// attention asked to store probabilities are InvalidArgument, named.
TEST(CudaOpsF32, MixedDevicesAreInvalidArgumentsNamingTheArgument) {
  REQUIRE_GPU();
  std::mt19937_64 rng(12);
  Tensor x = ToDevice(Input({4, 8}, DType::kF32, rng), DType::kF32);
  Tensor w = Input({8}, DType::kF32, rng);  // on the CPU: a caller bug
  Tensor y = x.Clone(), r = Tensor::Empty({4}, DType::kF32, DefaultCudaAllocator());
  absl::Status st = ops::RmsNorm(x, w, 1e-5f, y, r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("RmsNorm: w is f32[8] cpu"));
  Tensor lse = Tensor::Empty({1, 1, 4}, DType::kF32, DefaultCudaAllocator());
  Tensor q = ToDevice(Input({1, 4, 1, 8}, DType::kF32, rng), DType::kF32), out = q.Clone();
  Tensor probs = Tensor::Empty({1, 1, 4, 4}, DType::kF32, DefaultCudaAllocator());
  st = ops::Attention(q, q, q, out, lse, &probs);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("probs cannot be stored on cuda"));
}

// No GPU needed: the status conversion itself.
TEST(CudaCheck, StatusCarriesExpressionFileLineAndCanonicalCode) {
  const absl::Status oom = FromCuda(cudaErrorMemoryAllocation, "cudaMalloc(&p, n)", "a.cc", 12);
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(oom.message().find("a.cc:12: cudaMalloc(&p, n): cudaErrorMemoryAllocation"),
            absl::string_view::npos)
      << oom;
  EXPECT_EQ(FromCuda(cudaErrorInvalidValue, "x", "b.cc", 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FromCuda(cudaSuccess, "x", "b.cc", 1).ok());
  const absl::Status blas = FromCublas(CUBLAS_STATUS_ALLOC_FAILED, "cublasLtCreate(&h)", "c.cc", 3);
  EXPECT_EQ(blas.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(blas.message().find("c.cc:3: cublasLtCreate(&h)"), absl::string_view::npos) << blas;
  EXPECT_EQ(FromCublas(CUBLAS_STATUS_INVALID_VALUE, "x", "d.cc", 4).code(),
            absl::StatusCode::kInvalidArgument);
}

#ifdef BATON_HAVE_CUDNN
// No GPU needed: "no engine for this graph/shape" must read as Unimplemented
// (attention.cu falls back to FA2 on exactly that code), bad parameters as
// InvalidArgument, and the message must carry the call and file:line.
TEST(CudaCheck, CudnnStatusCarriesNameExpressionAndCanonicalCode) {
  const absl::Status shape =
      FromCudnn(CUDNN_STATUS_NOT_SUPPORTED_SHAPE, "cudnnBackendFinalize(plan)", "e.cc", 7);
  EXPECT_EQ(shape.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(shape.message().find("e.cc:7: cudnnBackendFinalize(plan): CUDNN_STATUS_NOT_SUPPORTED_SHAPE"),
            absl::string_view::npos)
      << shape;
  EXPECT_EQ(FromCudnn(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "x", "f.cc", 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromCudnn(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED, "x", "f.cc", 1).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(FromCudnn(CUDNN_STATUS_EXECUTION_FAILED, "x", "f.cc", 1).code(),
            absl::StatusCode::kInternal);
  EXPECT_TRUE(FromCudnn(CUDNN_STATUS_SUCCESS, "x", "f.cc", 1).ok());
}

// No GPU needed: every tensor and operation descriptor of both graphs
// (MHA and GQA) takes its attributes and finalizes; only the op graph and
// plan need a handle.
TEST(CudaCheck, CudnnAttentionGraphOpsFinalizeWithoutAGpu) {
  for (const cuda::AttentionDims& d : {cuda::AttentionDims{2, 333, 8, 2, 64},
                                       cuda::AttentionDims{4, 2048, 16, 16, 128}})
    for (bool bwd : {false, true}) {
      const absl::Status s = cuda::CudnnAttentionBuildOps(d, bwd);
      EXPECT_TRUE(s.ok()) << (bwd ? "bwd: " : "fwd: ") << s;
    }
}

// No GPU needed: heuristics and engine finalize for a described H100 (SXM,
// 132 SMs; cuDNN's DEVICEPROP JSON, field names from its parser's errors),
// so a CI machine sees whether cuDNN's fused engines accept both graphs.
constexpr const char* kH100Json =
    R"({"maxGridSize": [2147483647, 65535, 65535], "maxBlockSize": [1024, 1024, 64],)"
    R"( "regsPerBlock": 65536, "multiProcessorCount": 132, "warpSize": 32,)"
    R"( "maxSharedMemoryPerBlock": 49152, "maxSharedMemoryPerBlockOptin": 232448,)"
    R"( "reservedSharedMemoryPerBlock": 1024, "maxRegistersPerSM": 65536, "maxCtasPerSM": 32,)"
    R"( "maxThreadsPerBlock": 1024, "maxThreadsPerSM": 2048, "pciDeviceId": 0, "isTccDriver": 0,)"
    R"( "supportCoopLaunch": 1, "smClockRateKHz": 1980000, "memClockRateKHz": 2619000,)"
    R"( "l2CacheSize": 52428800, "deviceName": "NVIDIA H100 80GB HBM3", "deviceVer": 900,)"
    R"( "driverVer": 13000, "totalGlobalMem": 85045149696, "cudaDeviceId": 0})";

TEST(CudaCheck, CudnnAttentionPlansFinalizeForAnH100WithoutAGpu) {
  // cuDNN's engine support checks load the driver even for a described
  // device (log: "RUNTIME_PREREQUISITE_MISSING; Reason: this->libcuda ==
  // nullptr"); without it every config is refused before the graph is
  // looked at. (Without a driver cuDNN still logs finalizeMode SDPA_FWD /
  // SDPA_BWD for these graphs under CUDNN_LOGLEVEL_DBG=3: the patterns match.)
  void* libcuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (libcuda == nullptr) GTEST_SKIP() << "no CUDA driver (libcuda.so.1)";
  dlclose(libcuda);
  for (const cuda::AttentionDims& d :
       {cuda::AttentionDims{2, 333, 8, 2, 64}, cuda::AttentionDims{4, 2048, 16, 4, 128}})
    for (bool bwd : {false, true}) {
      const absl::StatusOr<std::string> info = cuda::CudnnAttentionPlanInfoForDevice(d, bwd, kH100Json);
      EXPECT_TRUE(info.ok()) << (bwd ? "bwd " : "fwd ") << d.b << "," << d.t << "," << d.h << ","
                             << d.kv << "," << d.d << ": " << info.status();
      if (info.ok())
        std::printf("H100 (described) %s %ld,%ld,%ld,%ld,%ld: %s\n", bwd ? "bwd" : "fwd", long(d.b),
                    long(d.t), long(d.h), long(d.kv), long(d.d), info->c_str());
    }
}
#endif

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(CudaOps, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
