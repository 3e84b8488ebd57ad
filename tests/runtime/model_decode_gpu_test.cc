// The cached decode on a GPU against the same on the CPU (the reference):
// the same weights (counter-based Init), a prefill then decode steps over a
// shuffled paged cache, logits compared row by row. f32 compute: GEMMs may
// round through TF32 on the GPU, hence 2e-3 of the row's largest logit;
// bf16 compute: 5e-2. Each runs with CUDA graphs on (padded buckets,
// capture on a bucket's second step, replay after) and off (eager steps).
// Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/gpu.h"
#include "runtime/model_decode.h"

#ifdef BATON_HAVE_CUDA
#include "runtime/cuda_allocator.h"

namespace baton {
namespace {

ModelConfig Config() {
  ModelConfig c;
  c.layers = 2;
  c.dim = 128;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 256;
  c.vocab_size = 300;
  c.qkv_bias = true;
  return c;
}

struct Side {
  Model model;
  KvCache cache;
};

class DecodeGpu : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(DecodeGpu, LogitsMatchTheCpuDecode) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << CudaDeviceSummary();
  const auto [dt, graphs] = GetParam();
  const ModelConfig c = Config();
  absl::StatusOr<Model> cpu_model = Model::Create(c, DType::kF32);
  absl::StatusOr<Model> gpu_model = Model::Create(c, dt, Device::kCuda);
  ASSERT_TRUE(cpu_model.ok() && gpu_model.ok());
  cpu_model->Init(3);
  gpu_model->Init(3);
  absl::StatusOr<KvCache> cpu_cache = KvCache::Create(KvCacheShape::For(c, DType::kF32, 16), 12);
  absl::StatusOr<KvCache> gpu_cache = KvCache::Create(KvCacheShape::For(c, dt, 16), 12, DefaultCudaAllocator());
  ASSERT_TRUE(cpu_cache.ok() && gpu_cache.ok());
  absl::StatusOr<DecodeModel> a = DecodeModel::Create(*cpu_model, *cpu_cache);
  absl::StatusOr<DecodeModel> b = DecodeModel::Create(*gpu_model, *gpu_cache);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->cuda_graphs()) << "on by default on a GPU";
  b->set_cuda_graphs(graphs);
  const std::vector<int32_t> table = {7, 2, 9, 4};  // 64 tokens, out of order
  std::vector<int32_t> seq;
  for (int i = 0; i < 50; ++i) seq.push_back((i * 37 + 11) % c.vocab_size);
  const double rel = dt == DType::kF32 ? 2e-3 : 5e-2;
  auto step = [&](int32_t start, int32_t count) {
    DecodeBatch batch;
    batch.AddSequence(table, std::vector<int32_t>(seq.begin() + start, seq.begin() + start + count), start, true);
    batch.Finish();
    absl::StatusOr<Tensor> la = a->Forward(batch), lb = b->Forward(batch);
    ASSERT_TRUE(la.ok() && lb.ok());
    const Tensor ha = LogitsOnHost(*la), hb = LogitsOnHost(*lb);
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < ha.numel(); ++i) scale = std::max(scale, std::abs(double{ha.data<float>()[i]}));
    for (int64_t i = 0; i < ha.numel(); ++i) {
      worst = std::max(worst, std::abs(double{ha.data<float>()[i]} - hb.data<float>()[i]) / scale);
    }
    EXPECT_LE(worst, rel) << "positions " << start << ".." << start + count - 1;
  };
  step(0, 30);  // prefill across two blocks
  for (int32_t t = 30; t < 50; ++t) step(t, 1);
  EXPECT_TRUE(b->graphs_status().ok()) << b->graphs_status();
  EXPECT_EQ(b->graphs_captured(), graphs ? 1 : 0) << "one bucket of decode steps";
}

// Three sequences decoding together (a bucket of 4: one padding row), one of
// them joining late with a prefill (a mixed step): the padding row must not
// write into the cache, nor the replays read stale tables or positions.
TEST_P(DecodeGpu, BatchedDecodeWithPaddingMatchesTheCpu) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << CudaDeviceSummary();
  const auto [dt, graphs] = GetParam();
  const ModelConfig c = Config();
  absl::StatusOr<Model> cpu_model = Model::Create(c, DType::kF32);
  absl::StatusOr<Model> gpu_model = Model::Create(c, dt, Device::kCuda);
  ASSERT_TRUE(cpu_model.ok() && gpu_model.ok());
  cpu_model->Init(5);
  gpu_model->Init(5);
  absl::StatusOr<KvCache> cpu_cache = KvCache::Create(KvCacheShape::For(c, DType::kF32, 8), 24);
  absl::StatusOr<KvCache> gpu_cache = KvCache::Create(KvCacheShape::For(c, dt, 8), 24, DefaultCudaAllocator());
  ASSERT_TRUE(cpu_cache.ok() && gpu_cache.ok());
  absl::StatusOr<DecodeModel> a = DecodeModel::Create(*cpu_model, *cpu_cache);
  absl::StatusOr<DecodeModel> b = DecodeModel::Create(*gpu_model, *gpu_cache);
  ASSERT_TRUE(a.ok() && b.ok());
  b->set_cuda_graphs(graphs);
  const std::vector<std::vector<int32_t>> tables = {{3, 17, 0, 21}, {8, 1, 12, 5}, {20, 9, 14, 2}};
  std::vector<std::vector<int32_t>> seqs(3);
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 32; ++i) seqs[s].push_back((i * 53 + s * 101 + 7) % c.vocab_size);
  }
  const std::vector<int32_t> prompt = {5, 9, 2};  // sequence s's prompt length is prompt[s]
  const double rel = dt == DType::kF32 ? 2e-3 : 5e-2;
  std::vector<int32_t> next = {0, 0, 0};  // the next position of each sequence
  for (int step = 0; step < 20; ++step) {
    DecodeBatch batch;
    for (int s = 0; s < 3; ++s) {
      if (s == 2 && step < 4) continue;  // joins late
      const int32_t count = next[s] == 0 ? prompt[s] : 1;
      batch.AddSequence(tables[s], std::vector<int32_t>(seqs[s].begin() + next[s], seqs[s].begin() + next[s] + count),
                        next[s], true);
      next[s] += count;
    }
    batch.Finish();
    absl::StatusOr<Tensor> la = a->Forward(batch), lb = b->Forward(batch);
    ASSERT_TRUE(la.ok()) << la.status();
    ASSERT_TRUE(lb.ok()) << lb.status();
    const Tensor ha = LogitsOnHost(*la), hb = LogitsOnHost(*lb);
    ASSERT_EQ(ha.numel(), hb.numel());
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < ha.numel(); ++i) scale = std::max(scale, std::abs(double{ha.data<float>()[i]}));
    for (int64_t i = 0; i < ha.numel(); ++i) {
      worst = std::max(worst, std::abs(double{ha.data<float>()[i]} - hb.data<float>()[i]) / scale);
    }
    EXPECT_LE(worst, rel) << "step " << step;
  }
  EXPECT_TRUE(b->graphs_status().ok()) << b->graphs_status();
  EXPECT_EQ(b->graphs_captured(), graphs ? 2 : 0) << "the 2-row and 4-row buckets (16 rows ran once, eagerly)";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DecodeGpu,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(DTypeName(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_graphs" : "_eager");
                         });

}  // namespace
}  // namespace baton

#else

TEST(DecodeGpu, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
