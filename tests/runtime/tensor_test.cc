// Tensor handles, views and the CPU allocators: views share storage,
// reshape keeps strides contiguous, slices offset along dim 0, clones are
// deep, and the arena hands out aligned memory it reclaims on Reset.
#include "runtime/tensor.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace baton {
namespace {

TEST(Tensor, ShapeStridesAndSize) {
  Tensor t = Tensor::Zeros({2, 3, 4}, DType::kF32);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.DebugString(), "f32[2, 3, 4] cpu");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(t.data<float>()[i], 0.0f);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::Empty({4, 3}, DType::kI32);
  for (int i = 0; i < 12; ++i) t.data<int32_t>()[i] = i;
  Tensor r = t.Reshape({2, 6});
  r.data<int32_t>()[7] = 100;
  EXPECT_EQ(t.data<int32_t>()[7], 100);
  Tensor s = t.Slice(2, 2);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_EQ(s.data<int32_t>()[0], 6);
  s.data<int32_t>()[1] = -1;
  EXPECT_EQ(t.data<int32_t>()[7], -1);
}

TEST(Tensor, CloneIsDeep) {
  Tensor t = Tensor::Empty({5}, DType::kF64);
  for (int i = 0; i < 5; ++i) t.data<double>()[i] = i * 0.5;
  Tensor c = t.Clone();
  c.data<double>()[2] = 42;
  EXPECT_EQ(t.data<double>()[2], 1.0);
  EXPECT_EQ(c.data<double>()[4], 2.0);
}

TEST(Tensor, BorrowDoesNotFree) {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  {
    Tensor t = Tensor::Borrow(buf, {2, 3}, DType::kF32);
    EXPECT_EQ(t.data<float>()[5], 6.0f);
  }
  EXPECT_EQ(buf[0], 1.0f);  // still ours
}

TEST(TensorDeathTest, WrongTypeOrReshapeAborts) {
  Tensor t = Tensor::Zeros({2, 3}, DType::kF32);
  EXPECT_DEATH(t.data<double>(), "f32");
  EXPECT_DEATH(t.Reshape({4, 2}), "\\[2, 3\\] -> \\[4, 2\\]");
}

TEST(CpuArena, AlignedBumpAllocationAndReset) {
  CpuArena arena(1024);
  Tensor a = Tensor::Empty({10}, DType::kF32, &arena);  // 40 -> 64 bytes
  Tensor b = Tensor::Empty({100}, DType::kF32, &arena);  // 400 -> 448
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw()) % 64, 0u);
  EXPECT_EQ(static_cast<char*>(b.raw()) - static_cast<char*>(a.raw()), 64);
  EXPECT_EQ(arena.bytes_in_use(), 512u);
  Tensor big = Tensor::Empty({1000}, DType::kF32, &arena);  // own block
  EXPECT_EQ(arena.bytes_in_use(), 512u + 4032u);
  arena.Reset();
  EXPECT_EQ(arena.bytes_in_use(), 0u);
  EXPECT_EQ(arena.bytes_peak(), 512u + 4032u);
  Tensor again = Tensor::Empty({10}, DType::kF32, &arena);
  EXPECT_EQ(again.raw(), a.raw());  // memory reused after Reset
}

}  // namespace
}  // namespace baton
