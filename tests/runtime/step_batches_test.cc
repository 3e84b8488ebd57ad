// StepBatches on the CPU: the step reads the very host tensors the sampler
// filled (no copies, no second set), so CPU training is unchanged.
#include <gtest/gtest.h>

#include "runtime/step_batches.h"

namespace baton {
namespace {

TEST(StepBatches, CpuStepReadsTheFilledHostTensors) {
  auto made = StepBatches::Create(Device::kCpu, 2, 3, 5);
  ASSERT_TRUE(made.ok()) << made.status();
  StepBatches& b = **made;
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE(b.BeginFill().ok());
    ASSERT_EQ(b.host_tokens().size(), 2u);
    for (int m = 0; m < 2; ++m) {
      EXPECT_EQ(b.host_tokens()[m].shape(), (Shape{3, 5}));
      EXPECT_EQ(b.host_tokens()[m].dtype(), DType::kI32);
      b.host_tokens()[m].data<int32_t>()[4] = 10 * step + m;
      b.host_targets()[m].data<int32_t>()[7] = 20 * step + m;
    }
    ASSERT_TRUE(b.Upload().ok());
    for (int m = 0; m < 2; ++m) {
      EXPECT_EQ(b.tokens()[m].raw(), b.host_tokens()[m].raw());
      EXPECT_EQ(b.tokens()[m].data<int32_t>()[4], 10 * step + m);
      EXPECT_EQ(b.targets()[m].data<int32_t>()[7], 20 * step + m);
    }
  }
}

}  // namespace
}  // namespace baton
