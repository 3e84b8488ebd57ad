// The vocab-parallel distillation losses (runtime/distill_loss.h and the
// offline one of runtime/distill_offline.h, with a tp group) equal the
// single-rank loss: every rank builds the same full
// (N, V) student and teacher logits from one seed, computes the whole-row
// reference alone, then its own vocabulary shard through the tp group.
// f64: loss sums and the gradient shard within relative 1e-12 (only the
// order of the cross-shard sums differs); f32 within 1e-5. Every rank
// returns the same sums, bit for bit.
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/mpi_communicator.h"
#include "parallel/tp_collectives.h"
#include "runtime/distill_loss.h"
#include "runtime/distill_offline.h"

namespace baton {
namespace {

Tensor Random(const Shape& shape, DType dt, std::mt19937_64& rng, double spread) {
  Tensor t = Tensor::Empty(shape, dt);
  std::normal_distribution<double> g(0.0, spread);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double x = g(rng);
    if (dt == DType::kF32) t.data<float>()[i] = static_cast<float>(x);
    else t.data<double>()[i] = x;
  }
  return t;
}

// Columns [start, start + w) of a contiguous (N, V) tensor.
Tensor Columns(const Tensor& x, int64_t start, int64_t w) {
  const int64_t n = x.dim(0), v = x.dim(1), es = DTypeSize(x.dtype());
  Tensor out = Tensor::Empty({n, w}, x.dtype());
  for (int64_t r = 0; r < n; ++r)
    std::memcpy(static_cast<char*>(out.raw()) + r * w * es, static_cast<const char*>(x.raw()) + (r * v + start) * es,
                w * es);
  return out;
}

double At(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kF32 ? t.data<float>()[i] : t.data<double>()[i];
}

// True when the three sums are the same bits on every rank.
bool SameOnEveryRank(const DistillLossSums& s) {
  double mine[3] = {s.loss, s.kl, s.ce}, lo[3], hi[3];
  MPI_Allreduce(mine, lo, 3, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(mine, hi, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return lo[0] == hi[0] && lo[1] == hi[1] && lo[2] == hi[2];
}

void CheckShardEqualsWhole(DType dt, double rtol, int64_t n, int64_t v_local, DistillLossOptions o) {
  auto comm = MpiCommunicator::Dup(MPI_COMM_WORLD, "tp");
  ASSERT_TRUE(comm.ok()) << comm.status();
  CommTpCollectives tp(**comm);
  const int size = tp.size(), rank = tp.rank();
  const int64_t v = v_local * size, start = v_local * rank;
  std::mt19937_64 rng(1000 + n);
  const Tensor student = Random({n, v}, dt, rng, 2.0), teacher = Random({n, v}, dt, rng, 3.0);
  Tensor targets = Tensor::Empty({n}, DType::kI32);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(v - 1));
  for (int64_t r = 0; r < n; ++r) targets.data<int32_t>()[r] = r % 7 == 3 ? -1 : id(rng);

  const double scale = 1.0 / static_cast<double>(n);
  Tensor d_whole = Tensor::Empty({n, v}, dt);
  absl::StatusOr<DistillLossSums> whole = DistillLoss(student, teacher, targets, o, scale, &d_whole);
  ASSERT_TRUE(whole.ok()) << whole.status();

  const Tensor s_local = Columns(student, start, v_local), t_local = Columns(teacher, start, v_local);
  Tensor d_local = Tensor::Empty({n, v_local}, dt);
  absl::StatusOr<DistillLossSums> shard = DistillLoss(s_local, t_local, targets, o, scale, &d_local, &tp, start);
  ASSERT_TRUE(shard.ok()) << shard.status();

  EXPECT_NEAR(shard->loss, whole->loss, rtol * std::fabs(whole->loss)) << "rank " << rank;
  EXPECT_NEAR(shard->kl, whole->kl, rtol * std::fabs(whole->kl) + rtol) << "rank " << rank;
  EXPECT_NEAR(shard->ce, whole->ce, rtol * std::fabs(whole->ce)) << "rank " << rank;
  EXPECT_TRUE(SameOnEveryRank(*shard));
  const Tensor d_ref = Columns(d_whole, start, v_local);
  for (int64_t i = 0; i < d_local.numel(); ++i) {
    const double err = std::fabs(At(d_local, i) - At(d_ref, i));
    ASSERT_LE(err, rtol * std::fabs(At(d_ref, i)) + rtol * scale * 1e-3)
        << "rank " << rank << " element " << i << ": " << At(d_local, i) << " vs " << At(d_ref, i);
  }
}

TEST(VocabParallelDistillLoss, F64EqualsOneRankTo1e12) {
  CheckShardEqualsWhole(DType::kF64, 1e-12, 13, 37, {0.5, 2.0});
  CheckShardEqualsWhole(DType::kF64, 1e-12, 5, 1, {0.9, 1.0});  // one id per rank
  CheckShardEqualsWhole(DType::kF64, 1e-12, 8, 64, {1.0, 0.5});
}

TEST(VocabParallelDistillLoss, F32EqualsOneRank) {
  CheckShardEqualsWhole(DType::kF32, 1e-5, 11, 53, {0.5, 2.0});
}

// The offline loss (teacher's top-k, whole on every rank) on vocabulary
// shards equals the single-rank one, for k from 1 to the whole vocabulary.
TEST(VocabParallelDistillLoss, OfflineF64EqualsOneRankTo1e12) {
  auto comm = MpiCommunicator::Dup(MPI_COMM_WORLD, "tp");
  ASSERT_TRUE(comm.ok()) << comm.status();
  CommTpCollectives tp(**comm);
  const int64_t n = 9, v_local = 23, v = v_local * tp.size(), start = v_local * tp.rank();
  std::mt19937_64 rng(77);
  const Tensor student = Random({n, v}, DType::kF64, rng, 2.0), teacher = Random({n, v}, DType::kF64, rng, 3.0);
  Tensor targets = Tensor::Empty({n}, DType::kI32);
  for (int64_t r = 0; r < n; ++r) targets.data<int32_t>()[r] = r == 4 ? -1 : static_cast<int32_t>((r * 37) % v);
  for (int64_t k : {int64_t{1}, int64_t{7}, v}) {
    const TeacherTopK top = *TeacherTopKOf(teacher, k, 1.5);
    const DistillLossOptions o{0.6, 1.5};
    Tensor d_whole = Tensor::Empty({n, v}, DType::kF64), d_local = Tensor::Empty({n, v_local}, DType::kF64);
    absl::StatusOr<DistillLossSums> whole = OfflineDistillLoss(student, top, targets, o, 0.5, &d_whole);
    ASSERT_TRUE(whole.ok()) << whole.status();
    absl::StatusOr<DistillLossSums> shard =
        OfflineDistillLoss(Columns(student, start, v_local), top, targets, o, 0.5, &d_local, &tp, start);
    ASSERT_TRUE(shard.ok()) << shard.status();
    EXPECT_NEAR(shard->loss, whole->loss, 1e-12 * std::fabs(whole->loss)) << "k=" << k;
    EXPECT_NEAR(shard->kl, whole->kl, 1e-12 * std::fabs(whole->kl) + 1e-15) << "k=" << k;
    EXPECT_TRUE(SameOnEveryRank(*shard));
    const Tensor d_ref = Columns(d_whole, start, v_local);
    for (int64_t i = 0; i < d_local.numel(); ++i)
      ASSERT_NEAR(At(d_local, i), At(d_ref, i), 1e-12 * std::fabs(At(d_ref, i)) + 1e-16) << "k=" << k << " i=" << i;
  }
}

// A shard's result is not the whole row's without the reduction: the
// comparison above can fail (guards against a test that passes trivially).
TEST(VocabParallelDistillLoss, WithoutTheGroupAShardDiffers) {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size == 1) GTEST_SKIP() << "one rank holds the whole vocabulary";
  std::mt19937_64 rng(5);
  const int64_t n = 4, v_local = 16;
  const Tensor s = Random({n, v_local * size}, DType::kF64, rng, 2.0), t = Random({n, v_local * size}, DType::kF64, rng, 2.0);
  Tensor y = Tensor::Empty({n}, DType::kI32);
  for (int64_t r = 0; r < n; ++r) y.data<int32_t>()[r] = static_cast<int32_t>(r);
  const double whole = DistillLoss(s, t, y, {0.5, 2.0}, 1.0, nullptr)->loss;
  const double alone = DistillLoss(Columns(s, 0, v_local), Columns(t, 0, v_local), y, {0.5, 2.0}, 1.0, nullptr)->loss;
  EXPECT_GT(std::fabs(alone - whole), 1e-3 * std::fabs(whole));
}

}  // namespace
}  // namespace baton
