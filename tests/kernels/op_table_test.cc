// The op table itself (runtime/op_table.h), on the CPU: the op list, names
// and ids agree; the CPU table is complete (it is the reference every other
// backend is held to); a missing kernel is Unimplemented naming the op and
// the device; the dispatch puts the op's name in front of a kernel's error;
// and the entry checks, written once for every device, return
// InvalidArgument naming the op, the argument and the shapes, aliasing
// included.
#include "runtime/op_table.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
using ops::OpId;

TEST(OpTable, NamesAreUniqueAndMatchTheIds) {
  std::set<std::string> names;
  for (int i = 0; i < ops::kNumOps; ++i) names.insert(ops::OpName(static_cast<OpId>(i)));
  EXPECT_EQ(static_cast<int>(names.size()), ops::kNumOps);
  EXPECT_STREQ(ops::OpName(OpId::kMatMul), "MatMul");
  EXPECT_STREQ(ops::OpName(OpId::kAdamW), "AdamW");
  EXPECT_STREQ(ops::OpName(OpId::kVocabParallelCrossEntropy), "VocabParallelCrossEntropy");
}

TEST(OpTable, TheCpuTableIsComplete) {
  for (int i = 0; i < ops::kNumOps; ++i) {
    EXPECT_TRUE(ops::HasKernel(Device::kCpu, static_cast<OpId>(i))) << ops::OpName(static_cast<OpId>(i));
  }
}

#ifndef BATON_HAVE_CUDA
TEST(OpTable, WithoutCudaNoOpHasACudaKernel) {
  for (int i = 0; i < ops::kNumOps; ++i) EXPECT_FALSE(ops::HasKernel(Device::kCuda, static_cast<OpId>(i)));
}
#endif

// A CPU-only op (a null entry) called on a device: Unimplemented, naming both.
TEST(OpTable, AMissingKernelIsUnimplementedNamingTheOpAndDevice) {
  const ops::OpKernels none{};
  Tensor x = Tensor::Zeros({3}, DType::kF32);
  const absl::Status st = ops::internal::Invoke(OpId::kSwiGlu, Device::kCuda, none.SwiGlu, x, x, x);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(st.message()), HasSubstr("SwiGlu: no kernel on cuda"));
  const absl::StatusOr<double> sum = ops::internal::Invoke(OpId::kSum, Device::kCuda, none.Sum, x);
  EXPECT_EQ(sum.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(sum.status().message()), HasSubstr("Sum: no kernel on cuda"));
}

// A kernel's error (a CUDA call failing deep inside) comes back with its
// code and its own file:line, the op's name in front.
absl::Status FailingKernel(const Tensor&, const Tensor&, Tensor&) {
  return absl::ResourceExhaustedError("gemm.cc:120: cudaMalloc(&ws, bytes): cudaErrorMemoryAllocation");
}
TEST(OpTable, AKernelErrorComesBackWithTheOpInFront) {
  Tensor x = Tensor::Zeros({3}, DType::kF32);
  const absl::Status st = ops::internal::Invoke(OpId::kAdd, Device::kCuda, &FailingKernel, x, x, x);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(st.message(), "Add: gemm.cc:120: cudaMalloc(&ws, bytes): cudaErrorMemoryAllocation");
}

void ExpectInvalid(const absl::Status& st, const std::string& needle) {
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(needle));
}

TEST(OpChecks, ShapesDTypesAndRanksAreNamed) {
  Tensor x = Tensor::Zeros({4, 8}, DType::kF32), w = Tensor::Zeros({9}, DType::kF32);
  Tensor y = Tensor::Zeros({4, 8}, DType::kF32), r = Tensor::Zeros({4}, DType::kF32);
  ExpectInvalid(ops::RmsNorm(x, w, 1e-5f, y, r), "RmsNorm: w is f32[9] cpu, expected shape [8]");
  Tensor r64 = Tensor::Zeros({4}, DType::kF64);
  ExpectInvalid(ops::RmsNorm(x, Tensor::Zeros({8}, DType::kF32), 1e-5f, y, r64), "RmsNorm: rstd is f64[4] cpu, expected f32[4]");
  Tensor bf = Tensor::Zeros({4, 8}, DType::kBF16);
  ExpectInvalid(ops::Scale(bf, 2.0f), "Scale: x is bf16[4, 8] cpu; the cpu kernels take f32 or f64");
  Tensor q3 = Tensor::Zeros({1, 4, 8}, DType::kF32);
  ExpectInvalid(ops::Rope(q3, 10000.0), "Rope: x is f32[1, 4, 8] cpu, expected rank 4");
  Tensor undefined;
  ExpectInvalid(ops::Add(x, undefined, y), "Add: b is undefined");
  Tensor tokens = Tensor::Zeros({4}, DType::kF32), out = Tensor::Zeros({4, 8}, DType::kF32);
  ExpectInvalid(ops::Embedding(tokens, Tensor::Zeros({10, 8}, DType::kF32), 0, out),
                "Embedding: tokens is f32[4] cpu, expected i32[4]");
}

TEST(OpChecks, AnOutputOverlappingAnInputIsRejected) {
  Tensor buf = Tensor::Zeros({8, 4}, DType::kF32), w = Tensor::Zeros({4, 4}, DType::kF32);
  Tensor x = buf.Slice(0, 4), y = buf.Slice(2, 4);  // rows 2..3 shared
  ExpectInvalid(ops::Linear(x, w, nullptr, y), "Linear: y f32[4, 4] cpu overlaps x");
  Tensor c = Tensor::Zeros({4, 4}, DType::kF32);
  ExpectInvalid(ops::MatMul(c, false, w, false, c), "MatMul: c f32[4, 4] cpu overlaps a");
  Tensor z = buf.Slice(4, 4);  // disjoint rows: fine
  BATON_EXPECT_OK(ops::Linear(x, w, nullptr, z));
}

TEST(OpChecks, AdamWChecksEveryTensorOfTheList) {
  Tensor p = Tensor::Zeros({5}, DType::kF32), g = p.Clone(), m = p.Clone(), v = p.Clone();
  Tensor p2 = Tensor::Zeros({5}, DType::kF32), g2 = Tensor::Zeros({6}, DType::kF32);
  const ops::AdamWTensors list[] = {{&p, &g, &m, &v}, {&p2, &g2, &m, &v}};
  ExpectInvalid(ops::AdamW(list, {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1}), "AdamW: g is f32[6] cpu, expected shape [5]");
  ExpectInvalid(ops::AdamW(p, g, m, v, {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 0}), "AdamW: step 0 (steps count from 1)");
  Tensor copy = Tensor::Zeros({5}, DType::kF32);
  const ops::AdamWTensors bad_copy[] = {{&p, &g, &m, &v, &copy}};
  ExpectInvalid(ops::AdamW(bad_copy, {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1}), "AdamW: compute is f32[5] cpu, expected bf16[5]");
}

// The CPU AdamW's bf16 copy is Convert of the updated weights, and the
// gradient scale gives the bits of scaling the gradient first.
TEST(OpTable, CpuAdamWWritesTheCopyAndScalesTheGradient) {
  std::mt19937_64 rng(5);
  Tensor p = testing::RandomTensor({33}, DType::kF32, rng), g = testing::RandomTensor({33}, DType::kF32, rng);
  Tensor m = Tensor::Zeros({33}, DType::kF32), v = Tensor::Zeros({33}, DType::kF32);
  Tensor p_ref = p.Clone(), g_ref = g.Clone(), m_ref = m.Clone(), v_ref = v.Clone();
  Tensor copy = Tensor::Empty({33}, DType::kBF16);
  const ops::AdamWTensors one[] = {{&p, &g, &m, &v, &copy}};
  BATON_EXPECT_OK(ops::AdamW(one, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 0.5f}));
  BATON_EXPECT_OK(ops::Scale(g_ref, 0.5f));
  BATON_EXPECT_OK(ops::AdamW(p_ref, g_ref, m_ref, v_ref, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1}));
  EXPECT_TRUE(testing::AllClose(p, p_ref, {0, 0}, "p"));
  Tensor want = Tensor::Empty({33}, DType::kBF16), got32 = Tensor::Empty({33}, DType::kF32),
         want32 = Tensor::Empty({33}, DType::kF32);
  BATON_EXPECT_OK(ops::Convert(p_ref, want));
  BATON_EXPECT_OK(ops::Convert(want, want32));
  BATON_EXPECT_OK(ops::Convert(copy, got32));
  EXPECT_TRUE(testing::AllClose(got32, want32, {0, 0}, "bf16 copy"));
}

}  // namespace
}  // namespace baton
