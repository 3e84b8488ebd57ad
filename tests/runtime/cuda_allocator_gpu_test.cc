// The CUDA caching allocator: blocks are reused (no cudaMalloc per step),
// peak and reserved bytes are reported, EmptyCache returns cached blocks,
// and host<->device copies through Tensor round-trip exactly.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/cuda_allocator.h"
#include "runtime/tensor.h"

#ifdef BATON_HAVE_CUDA
namespace baton {
namespace {

#define REQUIRE_GPU() \
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no GPU"

TEST(CudaAllocator, RoundsSizes) {
  EXPECT_EQ(CudaCachingAllocator::RoundSize(0), 512u);
  EXPECT_EQ(CudaCachingAllocator::RoundSize(513), 1024u);
  EXPECT_EQ(CudaCachingAllocator::RoundSize((1u << 20) + 1), 2u << 20);
  EXPECT_EQ(CudaCachingAllocator::RoundSize(5u << 20), 6u << 20);
}

TEST(CudaAllocator, ReusesBlocksAcrossSteps) {
  REQUIRE_GPU();
  auto alloc = CudaCachingAllocator::Create(0);
  ASSERT_TRUE(alloc.ok()) << alloc.status();
  CudaCachingAllocator& a = **alloc;
  const size_t sizes[] = {1000, 3u << 20, 4096, 7u << 20};
  for (int step = 0; step < 5; ++step) {  // one "training step": allocate all, free all
    std::vector<Tensor> live;
    for (size_t s : sizes) live.push_back(Tensor::Empty({static_cast<int64_t>(s)}, DType::kF32, &a));
  }
  const CudaMemoryStats st = a.stats();
  EXPECT_EQ(st.device_mallocs, 4);  // only the first step reached cudaMalloc
  EXPECT_EQ(st.in_use, 0u);
  const size_t expect = 4096 + (12u << 20) + 16384 + (28u << 20);  // rounded f32 bytes
  EXPECT_EQ(st.peak_in_use, expect);
  EXPECT_EQ(st.reserved, expect);
  ASSERT_TRUE(a.EmptyCache().ok());
  EXPECT_EQ(a.stats().reserved, 0u);
}

TEST(CudaAllocator, CopyRoundTripAndZero) {
  REQUIRE_GPU();
  Tensor h = Tensor::Empty({19, 111}, DType::kF32);
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = 0.5f + static_cast<float>(i);
  Tensor d = Tensor::Empty(h.shape(), DType::kF32, DefaultCudaAllocator());
  d.CopyFrom(h);
  Tensor d2 = d.Clone();  // device -> device
  EXPECT_EQ(d2.device(), Device::kCuda);
  Tensor back = Tensor::Empty(h.shape(), DType::kF32);
  back.CopyFrom(d2);
  EXPECT_EQ(std::memcmp(back.raw(), h.raw(), h.nbytes()), 0);
  d2.Zero();
  back.CopyFrom(d2);
  for (int64_t i = 0; i < back.numel(); ++i) ASSERT_EQ(back.data<float>()[i], 0.0f) << i;
}

TEST(CudaAllocator, OutOfMemoryIsResourceExhausted) {
  REQUIRE_GPU();
  auto alloc = CudaCachingAllocator::Create(0);
  ASSERT_TRUE(alloc.ok());
  absl::StatusOr<void*> p = (*alloc)->TryAllocate(size_t{1} << 50);  // 1 PiB
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
  EXPECT_NE(p.status().message().find("cudaMalloc"), std::string::npos) << p.status();
}

TEST(CudaAllocator, CreateRejectsAMissingDevice) {
  REQUIRE_GPU();
  auto alloc = CudaCachingAllocator::Create(CudaDeviceCount());
  ASSERT_FALSE(alloc.ok());
  EXPECT_EQ(alloc.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace baton
#else
TEST(CudaAllocator, CreateFailsWithoutCuda) {
  auto alloc = baton::CudaCachingAllocator::Create(0);
  ASSERT_FALSE(alloc.ok());
  EXPECT_EQ(alloc.status().code(), absl::StatusCode::kFailedPrecondition);
}
#endif
