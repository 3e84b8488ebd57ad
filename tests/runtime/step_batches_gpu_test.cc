// StepBatches on the GPU: each step's uploads land in the device set the
// step reads, in stream order (a later step's copy never shows an earlier
// step's bytes), from alternating pinned host sets.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/gpu.h"
#include "runtime/step_batches.h"

#ifdef BATON_HAVE_CUDA
namespace baton {
namespace {

#define REQUIRE_GPU() \
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no GPU"

std::vector<int32_t> Read(const Tensor& device) {
  Tensor h = Tensor::Empty(device.shape(), device.dtype());
  h.CopyFrom(device);  // waits for the stream: every queued upload has run
  return std::vector<int32_t>(h.data<int32_t>(), h.data<int32_t>() + h.numel());
}

TEST(StepBatchesGpu, EachStepReadsItsOwnUpload) {
  REQUIRE_GPU();
  const int mbs = 2;
  const int64_t B = 4, T = 33;
  auto made = StepBatches::Create(Device::kCuda, mbs, B, T);
  ASSERT_TRUE(made.ok()) << made.status();
  StepBatches& b = **made;
  void* previous_host = nullptr;
  for (int step = 0; step < 5; ++step) {
    ASSERT_TRUE(b.BeginFill().ok());
    EXPECT_NE(b.host_tokens()[0].raw(), previous_host);  // the sets alternate
    previous_host = b.host_tokens()[0].raw();
    for (int m = 0; m < mbs; ++m) {
      for (int64_t i = 0; i < B * T; ++i) {
        b.host_tokens()[m].data<int32_t>()[i] = static_cast<int32_t>(1000 * step + 100 * m + i);
        b.host_targets()[m].data<int32_t>()[i] = static_cast<int32_t>(-(1000 * step + 100 * m + i));
      }
    }
    ASSERT_TRUE(b.Upload().ok());
    if (step % 2 == 1) continue;  // two uploads queued back to back: the device set holds the later one
    for (int m = 0; m < mbs; ++m) {
      ASSERT_EQ(b.tokens()[m].device(), Device::kCuda);
      const std::vector<int32_t> tok = Read(b.tokens()[m]), tgt = Read(b.targets()[m]);
      for (int64_t i = 0; i < B * T; ++i) {
        ASSERT_EQ(tok[i], 1000 * step + 100 * m + i) << "step " << step << " mb " << m << " i " << i;
        ASSERT_EQ(tgt[i], -(1000 * step + 100 * m + i));
      }
    }
  }
}

}  // namespace
}  // namespace baton
#endif
