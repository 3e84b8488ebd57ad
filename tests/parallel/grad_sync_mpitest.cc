// GradSync under mpiexec: bucketed, hook-driven gradient sums give the same
// bits as summing every grad on its own, for any bucket size, with hooks
// reporting in backward order over several micro-batches (buckets start
// before Finish) or not at all (Finish does everything); and the
// non-blocking all-reduce equals the blocking one for odd sizes.
#include <mpi.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/grad_sync.h"
#include "parallel/mpi_communicator.h"

namespace baton {
namespace {

std::unique_ptr<MpiCommunicator> World() {
  auto c = MpiCommunicator::Dup(MPI_COMM_WORLD, "world");
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

Tensor Random(const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::Empty(shape, DType::kF32);
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

// Two chunks of params with odd shapes; grads differ per rank.
std::vector<std::vector<Param>> MakeChunks(int rank) {
  const std::vector<std::vector<Shape>> shapes = {{{7, 3}, {5}, {11, 2}}, {{3}, {13, 4}, {1}, {6, 6}}};
  std::vector<std::vector<Param>> chunks;
  uint32_t seed = 100 + 1000 * rank;
  for (const auto& c : shapes) {
    chunks.emplace_back();
    for (const Shape& s : c) {
      Param p;
      p.value = Tensor::Zeros(s, DType::kF32);
      p.grad = Random(s, seed++);
      chunks.back().push_back(p);
    }
  }
  return chunks;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(GradSyncTest, BucketsEqualSummingEachGradForAnyBucketSize) {
  auto world = World();
  std::vector<std::vector<Param>> expected = MakeChunks(world->rank());
  for (auto& c : expected) {
    for (Param& p : c) ASSERT_TRUE(world->AllReduceSum(p.grad).ok());
  }
  for (int64_t bucket_bytes : {int64_t{0}, int64_t{4}, int64_t{64}, int64_t{200}, int64_t{1} << 20}) {
    for (bool hooks : {true, false}) {
      std::vector<std::vector<Param>> chunks = MakeChunks(world->rank());
      GradSync sync(*world, {&chunks[0], &chunks[1]}, bucket_bytes);
      const int microbatches = 3;
      sync.BeginStep(microbatches);
      if (hooks) {
        // Backward order per micro-batch: chunk 1 then chunk 0, params last to first, in pairs.
        for (int mb = 0; mb < microbatches; ++mb) {
          for (int c = 1; c >= 0; --c) {
            for (int end = static_cast<int>(chunks[c].size()); end > 0; end -= 2) {
              sync.OnGradsReady(c, std::max(0, end - 2), end);
            }
          }
        }
        EXPECT_EQ(sync.started_early(), sync.num_buckets()) << "every bucket starts during the backward";
      }
      ASSERT_TRUE(sync.Finish().ok());
      for (size_t c = 0; c < chunks.size(); ++c) {
        for (size_t i = 0; i < chunks[c].size(); ++i) {
          EXPECT_TRUE(SameBits(chunks[c][i].grad, expected[c][i].grad))
              << "bucket_bytes " << bucket_bytes << " hooks " << hooks << " chunk " << c << " param " << i;
        }
      }
    }
  }
}

TEST(GradSyncTest, BucketsStartOnlyWhenFinal) {
  auto world = World();
  std::vector<std::vector<Param>> chunks = MakeChunks(world->rank());
  GradSync sync(*world, {&chunks[0], &chunks[1]}, 1);  // one param per bucket
  sync.BeginStep(2);
  sync.OnGradsReady(1, 0, 4);  // first micro-batch: nothing final yet
  EXPECT_EQ(sync.started_early(), 0);
  sync.OnGradsReady(1, 3, 4);  // the last param of chunk 1 is final: the first bucket
  EXPECT_EQ(sync.started_early(), 1);
  sync.OnGradsReady(1, 0, 1);  // final, but buckets start in order: waits for params 1, 2
  EXPECT_EQ(sync.started_early(), 1);
  ASSERT_TRUE(sync.Finish().ok());
}

TEST(GradSyncTest, NonBlockingAllReduceEqualsBlocking) {
  auto world = World();
  for (int64_t n : {1, 2, 3, 17, 1000}) {
    Tensor a = Random({n}, 7 + world->rank() + static_cast<uint32_t>(n));
    Tensor b = a.Clone();
    ASSERT_TRUE(world->AllReduceSum(a).ok());
    auto req = world->IAllReduceSum(b);
    ASSERT_TRUE(req.ok()) << req.status();
    while (!(*req)->Test()) {
    }
    ASSERT_TRUE((*req)->Wait().ok());
    EXPECT_TRUE(SameBits(a, b)) << n;
  }
}

}  // namespace
}  // namespace baton
