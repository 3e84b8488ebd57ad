// The device parameter fill (kernels/cuda/philox_init.h) against the host
// fills of runtime/rng.h, bit for bit: several names, seeds (one above
// 2^32), std values, 1-D lengths and logical offsets of both parities
// (1, 2, 19, 111, 989, 65539, and 45 M elements for the grid-stride path),
// 2-D regions at odd row and column offsets, and the tensor-parallel
// shards InitParamOnDevice (runtime/param_init_device.h) writes for a
// Param split over tp = 2, 3, 4. The model-level check (Model::Init on
// CUDA equals the CPU model's weights) is in tests/runtime/model_gpu_test.cc.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/param.h"
#include "runtime/param_init_device.h"
#include "runtime/rng.h"
#include "runtime/tensor.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/philox_init.h"
#include "runtime/cuda_allocator.h"

namespace baton {
namespace {

#define REQUIRE_GPU() \
  if (CudaDeviceCount() == 0) GTEST_SKIP() << CudaDeviceSummary()

// Index of the first element whose bits differ, or -1; reported with both
// values in hex so a last-bit difference is visible.
int64_t FirstMismatch(const Tensor& got, const Tensor& want, std::string* why) {
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::memcmp(&g[i], &w[i], sizeof(float)) != 0) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "element %lld: device %a, host %a", static_cast<long long>(i), g[i], w[i]);
      *why = buf;
      return i;
    }
  }
  return -1;
}

Tensor ToHost(const Tensor& d) {
  Tensor h = Tensor::Empty(d.shape(), DType::kF32);
  h.CopyFrom(d);  // synchronous
  return h;
}

Tensor DeviceEmpty(const Shape& s) { return Tensor::Empty(s, DType::kF32, DefaultCudaAllocator()); }

const char* const kNames[] = {"embed", "layers.0.attn.wq", "layers.17.mlp.w_down", "lm_head"};
const uint64_t kSeeds[] = {0, 1234, 0xDEADBEEFCAFEull};

TEST(PhiloxInitGpu, OneDimensionalFillsEqualTheHostBitForBit) {
  REQUIRE_GPU();
  int cases = 0;
  for (const char* name : kNames) {
    for (uint64_t seed : kSeeds) {
      for (int64_t n : {1, 2, 19, 111, 989, 65539}) {
        for (int64_t offset : {0, 1, 7, 1000000}) {
          for (float std : {0.02f, 1.0f, 0.02f / std::sqrt(48.0f)}) {
            Tensor want = Tensor::Empty({n}, DType::kF32);
            FillNormal(want, seed, name, std, offset);
            Tensor d = DeviceEmpty({n});
            ASSERT_TRUE(cuda::PhiloxNormalFill(d.data<float>(), 1, n, 0, 0, offset, seed, Fnv1a64(name), std,
                                               nullptr).ok());
            std::string why;
            ASSERT_EQ(FirstMismatch(ToHost(d), want, &why), -1)
                << name << " seed " << seed << " n " << n << " offset " << offset << " std " << std << ": " << why;
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 4 * 3 * 6 * 4 * 3);
}

// 4096 × 11008 (a 7B w_up): 22.5 M Philox blocks, more threads than the grid.
TEST(PhiloxInitGpu, LargeTensorEqualsTheHost) {
  REQUIRE_GPU();
  const int64_t n = int64_t{4096} * 11008;
  Tensor want = Tensor::Empty({n}, DType::kF32);
  FillNormal(want, 1234, "layers.5.mlp.w_up", 0.02f);
  Tensor d = DeviceEmpty({n});
  ASSERT_TRUE(cuda::PhiloxNormalFill(d.data<float>(), 1, n, 0, 0, 0, 1234, Fnv1a64("layers.5.mlp.w_up"), 0.02f,
                                     nullptr).ok());
  std::string why;
  EXPECT_EQ(FirstMismatch(ToHost(d), want, &why), -1) << why;
}

// Regions of a logical (R, C) tensor with odd C and odd corners: each row
// starts on an index of either parity.
TEST(PhiloxInitGpu, RegionsEqualFillNormal2D) {
  REQUIRE_GPU();
  struct Region {
    int64_t rows, cols, logical_cols, row0, col0;
  } regions[] = {{13, 17, 17, 0, 0}, {10, 6, 17, 2, 5}, {1, 1, 45, 3, 44}, {7, 44, 45, 1, 1}, {33, 128, 256, 5, 128}};
  for (const Region& g : regions) {
    for (uint64_t seed : kSeeds) {
      Tensor want = Tensor::Empty({g.rows, g.cols}, DType::kF32);
      FillNormal2D(want, seed, "layers.3.attn.wo", 0.37f, g.logical_cols, g.row0, g.col0);
      Tensor d = DeviceEmpty({g.rows, g.cols});
      ASSERT_TRUE(cuda::PhiloxNormalFill(d.data<float>(), g.rows, g.cols, g.logical_cols, g.row0, g.col0, seed,
                                         Fnv1a64("layers.3.attn.wo"), 0.37f, nullptr).ok());
      std::string why;
      EXPECT_EQ(FirstMismatch(ToHost(d), want, &why), -1)
          << g.rows << "x" << g.cols << " of (., " << g.logical_cols << ") at (" << g.row0 << ", " << g.col0
          << ") seed " << seed << ": " << why;
    }
  }
}

// What Model::Init does per parameter on CUDA (InitParamOnDevice) against
// what it does on the CPU (FillNormal / FillNormal2D of the shard), for
// column-parallel (rows split) and row-parallel (columns split) weights.
TEST(PhiloxInitGpu, TensorParallelShardsEqualTheHostShards) {
  REQUIRE_GPU();
  const int64_t R = 36, C = 60;  // divisible by tp = 2, 3, 4
  for (int tp : {1, 2, 3, 4}) {
    for (int shard_dim : {-1, 0, 1}) {
      if (tp > 1 && shard_dim < 0) continue;
      for (int rank = 0; rank < tp; ++rank) {
        Param p;
        p.name = "layers.2.mlp.w_gate";
        p.full_shape = {R, C};
        p.shard_dim = tp > 1 ? shard_dim : -1;
        Shape local = {R, C};
        if (p.shard_dim >= 0) {
          local[p.shard_dim] /= tp;
          p.shard_offset = local[p.shard_dim] * rank;
        }
        p.value = DeviceEmpty(local);
        ASSERT_TRUE(InitParamOnDevice(p, ParamInit::Normal(0.02f), 99).ok());
        Tensor want = Tensor::Empty(local, DType::kF32);
        if (p.shard_dim < 0) {
          FillNormal(want, 99, p.name, 0.02f);
        } else {
          FillNormal2D(want, 99, p.name, 0.02f, C, p.shard_dim == 0 ? p.shard_offset : 0,
                       p.shard_dim == 1 ? p.shard_offset : 0);
        }
        std::string why;
        EXPECT_EQ(FirstMismatch(ToHost(p.value), want, &why), -1)
            << "tp " << tp << " shard_dim " << shard_dim << " rank " << rank << ": " << why;
      }
    }
  }
  Param ones;
  ones.name = "final_norm";
  ones.full_shape = {1001};
  ones.value = DeviceEmpty({1001});
  ASSERT_TRUE(InitParamOnDevice(ones, ParamInit::Constant(1.0f), 99).ok());
  const Tensor h = ToHost(ones.value);
  for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(h.data<float>()[i], 1.0f) << i;
}

// The comparison can fail: one ulp on one element, another seed, and a
// shard that is not a block of its tensor are all caught.
TEST(PhiloxInitGpu, MismatchesAndBadShardsAreCaught) {
  REQUIRE_GPU();
  Tensor want = Tensor::Empty({111}, DType::kF32);
  FillNormal(want, 5, "embed", 0.02f);
  Tensor d = DeviceEmpty({111});
  ASSERT_TRUE(cuda::PhiloxNormalFill(d.data<float>(), 1, 111, 0, 0, 0, 5, Fnv1a64("embed"), 0.02f, nullptr).ok());
  Tensor got = ToHost(d);
  got.data<float>()[57] = std::nextafter(got.data<float>()[57], 1.0f);
  std::string why;
  EXPECT_EQ(FirstMismatch(got, want, &why), 57);
  ASSERT_TRUE(cuda::PhiloxNormalFill(d.data<float>(), 1, 111, 0, 0, 0, 6, Fnv1a64("embed"), 0.02f, nullptr).ok());
  EXPECT_EQ(FirstMismatch(ToHost(d), want, &why), 0);

  Param p;
  p.name = "layers.0.attn.wq";
  p.full_shape = {8, 8};
  p.shard_dim = 0;
  p.shard_offset = 6;  // rows 6..9 of 8
  p.value = DeviceEmpty({4, 8});
  const absl::Status s = InitParamOnDevice(p, ParamInit::Normal(0.02f), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  p.value = Tensor::Empty({4, 8}, DType::kF32);  // on the host
  EXPECT_EQ(InitParamOnDevice(p, ParamInit::Normal(0.02f), 1).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(PhiloxInitGpu, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
