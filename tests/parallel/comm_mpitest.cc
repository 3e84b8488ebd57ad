// Multi-rank tests of MpiCommunicator's collectives on every group (world,
// tp, dp, pp) of every mesh the world size allows (nccl-tests style: each
// rank fills its input from a formula of (group rank, index) and computes
// the expected output alone). Sums are checked bit for bit against the
// documented fold (rank 0 + rank 1 + ... in the dtype), which also proves
// every rank holds the same bits; argument errors come back as Status.
// Run under mpiexec -n {1,2,4,8} (tests/CMakeLists.txt).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/mesh.h"
#include "parallel/mpi_check.h"
#include "parallel/mpi_communicator.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

int WorldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Inputs: values /37 are not dyadic, so a different summation order gives
// different bits and the bitwise check can tell the orders apart.
template <typename T> T Value(int rank, int64_t i);
template <> float Value<float>(int rank, int64_t i) {
  return static_cast<float>((rank * 1000003 + i * 7919) % 2003 - 1001) / 37.0f;
}
template <> double Value<double>(int rank, int64_t i) {
  return static_cast<double>((rank * 1000003 + i * 7919) % 2003 - 1001) / 37.0;
}
template <> int32_t Value<int32_t>(int rank, int64_t i) {
  return static_cast<int32_t>(rank * 100003 + i * 3 - 50);
}

template <typename T>
Tensor Filled(const Shape& shape, int rank, int64_t offset = 0) {
  Tensor t = Tensor::Empty(shape, DTypeOf<T>());
  T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = Value<T>(rank, offset + i);
  return t;
}

// The documented reduction: ((v_0 + v_1) + ...) + v_{n-1} in T.
template <typename T>
T FoldOverRanks(int n, int64_t i) {
  T acc = Value<T>(0, i);
  for (int r = 1; r < n; ++r) acc += Value<T>(r, i);
  return acc;
}

// Number of elements whose bits differ; the first one is described in *why.
template <typename T>
int64_t BitwiseMismatches(const T* got, const std::vector<T>& want, std::string* why) {
  int64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if (bad++ == 0) *why = absl::StrCat("index ", i, ": got ", got[i], ", want ", want[i]);
    }
  }
  return bad;
}

// The checker must fail on a one-ulp change, or it proves nothing.
TEST(BitwiseCheckerTest, CatchesOneUlp) {
  std::vector<float> want = {1.0f / 3.0f, 2.5f, -7.0f};
  std::vector<float> got = want;
  std::string why;
  EXPECT_EQ(BitwiseMismatches(got.data(), want, &why), 0);
  got[1] = std::nextafter(got[1], 10.0f);
  EXPECT_EQ(BitwiseMismatches(got.data(), want, &why), 1);
  EXPECT_THAT(why, HasSubstr("index 1"));
}

// A 64-bit FNV-1a hash of a buffer, compared across the group with raw MPI
// (not the communicator under test): equal min and max = same bits everywhere.
bool SameBitsOnEveryRank(const Tensor& t, MPI_Comm comm) {
  uint64_t h = 1469598103934665603ull;
  const unsigned char* p = static_cast<const unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  uint64_t lo = 0, hi = 0;
  MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
  MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
  return lo == hi;
}

template <typename T>
void CheckAllReduce(MpiCommunicator& c, int64_t n) {
  SCOPED_TRACE(absl::StrCat("all_reduce_sum ", DTypeName(DTypeOf<T>()), "[", n, "]"));
  Tensor t = Filled<T>({n}, c.rank());
  ASSERT_TRUE(c.AllReduceSum(t).ok());
  std::vector<T> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = FoldOverRanks<T>(c.size(), i);
  std::string why;
  EXPECT_EQ(BitwiseMismatches(t.data<T>(), want, &why), 0) << why;
  EXPECT_TRUE(SameBitsOnEveryRank(t, c.comm()));
}

template <typename T>
void CheckReduceScatter(MpiCommunicator& c, int64_t m) {
  SCOPED_TRACE(absl::StrCat("reduce_scatter_sum ", DTypeName(DTypeOf<T>()), " m=", m));
  const int64_t cols = 3;
  Tensor in = Filled<T>({c.size() * m, cols}, c.rank());
  Tensor out = Tensor::Zeros({m, cols}, DTypeOf<T>());
  ASSERT_TRUE(c.ReduceScatterSum(in, out).ok());
  std::vector<T> want(m * cols);
  for (int64_t i = 0; i < m * cols; ++i) want[i] = FoldOverRanks<T>(c.size(), c.rank() * m * cols + i);
  std::string why;
  EXPECT_EQ(BitwiseMismatches(out.data<T>(), want, &why), 0) << why;
}

void CheckAllGather(MpiCommunicator& c, int64_t m, bool in_place) {
  SCOPED_TRACE(absl::StrCat("all_gather m=", m, in_place ? " in place" : ""));
  const int64_t cols = 2;
  Tensor out = Tensor::Zeros({c.size() * m, cols}, DType::kF32);
  Tensor in = in_place ? out.Slice(c.rank() * m, m) : Tensor::Empty({m, cols}, DType::kF32);
  for (int64_t i = 0; i < m * cols; ++i) in.data<float>()[i] = Value<float>(c.rank(), i);
  ASSERT_TRUE(c.AllGather(in, out).ok());
  std::vector<float> want;
  for (int r = 0; r < c.size(); ++r)
    for (int64_t i = 0; i < m * cols; ++i) want.push_back(Value<float>(r, i));
  std::string why;
  EXPECT_EQ(BitwiseMismatches(out.data<float>(), want, &why), 0) << why;
}

void CheckBroadcast(MpiCommunicator& c) {
  for (int root = 0; root < c.size(); ++root) {
    SCOPED_TRACE(absl::StrCat("broadcast from ", root));
    Tensor t = Filled<double>({2, 19}, c.rank());
    ASSERT_TRUE(c.Broadcast(t, root).ok());
    std::vector<double> want(38);
    for (int64_t i = 0; i < 38; ++i) want[i] = Value<double>(root, i);
    std::string why;
    EXPECT_EQ(BitwiseMismatches(t.data<double>(), want, &why), 0) << why;
  }
}

// Every (dp, pp, tp) whose product is the world size.
std::vector<MeshShape> ShapesOf(int world) {
  std::vector<MeshShape> shapes;
  for (int dp = 1; dp <= world; ++dp)
    for (int pp = 1; pp <= world; ++pp)
      if (world % (dp * pp) == 0) shapes.push_back({dp, pp, world / (dp * pp)});
  return shapes;
}

TEST(MpiCommunicatorTest, EveryCollectiveOnEveryGroupOfEveryMesh) {
  const int world = WorldSize();
  for (const MeshShape& shape : ShapesOf(world)) {
    absl::StatusOr<Mesh> mesh = Mesh::Create(shape, world, WorldRank());
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    SCOPED_TRACE(mesh->DebugString());
    absl::StatusOr<MeshComms> comms = CreateMpiMeshComms(*mesh);
    ASSERT_TRUE(comms.ok()) << comms.status();
    struct Group { const char* name; Communicator* comm; std::vector<int> ranks; int coord; };
    const std::vector<Group> groups = {
        {"world", comms->world.get(), [&] { std::vector<int> v(world); for (int i = 0; i < world; ++i) v[i] = i; return v; }(), mesh->rank()},
        {"tp", comms->tp.get(), mesh->TpGroup(), mesh->tp_rank()},
        {"dp", comms->dp.get(), mesh->DpGroup(), mesh->dp_rank()},
        {"pp", comms->pp.get(), mesh->PpGroup(), mesh->pp_rank()},
    };
    for (const Group& g : groups) {
      SCOPED_TRACE(g.name);
      auto& c = dynamic_cast<MpiCommunicator&>(*g.comm);
      EXPECT_EQ(c.name(), g.name);
      EXPECT_EQ(c.rank(), g.coord);
      ASSERT_EQ(c.size(), static_cast<int>(g.ranks.size()));
      // The members, in group-rank order, are the mesh's list.
      std::vector<int> members(c.size());
      int me = WorldRank();
      MPI_Allgather(&me, 1, MPI_INT, members.data(), 1, MPI_INT, c.comm());
      EXPECT_EQ(members, g.ranks);
      // Odd sizes, including fewer elements than ranks (empty chunks).
      for (int64_t n : {1, 7, 111, 989}) {
        CheckAllReduce<float>(c, n);
        CheckAllReduce<double>(c, n);
        CheckAllReduce<int32_t>(c, n);
      }
      for (int64_t m : {1, 5}) {
        CheckReduceScatter<float>(c, m);
        CheckReduceScatter<int32_t>(c, m);
        CheckAllGather(c, m, /*in_place=*/false);
        CheckAllGather(c, m, /*in_place=*/true);
      }
      CheckBroadcast(c);
      EXPECT_TRUE(c.Barrier().ok());
    }
  }
}

// A sum that MPI_SUM in a tree or ring might round differently: the result
// must be the left fold, exactly, on every rank.
TEST(MpiCommunicatorTest, AllReduceIsTheRankOrderFold) {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> c = MpiCommunicator::Dup(MPI_COMM_WORLD, "world");
  ASSERT_TRUE(c.ok()) << c.status();
  // rank 0 holds 1, every other rank 2^-24: 1 + 2^-24 rounds back to 1 at
  // every step of the left fold, whatever a tree would do.
  Tensor t = Tensor::Empty({3}, DType::kF32);
  for (int i = 0; i < 3; ++i) t.data<float>()[i] = (*c)->rank() == 0 ? 1.0f : std::ldexp(1.0f, -24);
  ASSERT_TRUE((*c)->AllReduceSum(t).ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.data<float>()[i], 1.0f);
}

TEST(MpiCommunicatorTest, LargeBufferAllReduce) {
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> c = MpiCommunicator::Dup(MPI_COMM_WORLD, "world");
  ASSERT_TRUE(c.ok()) << c.status();
  CheckAllReduce<float>(**c, (1 << 18) + 3);  // past the eager limit: rendezvous path
}

TEST(MpiCommunicatorTest, BadArgumentsAreStatusesNotHangs) {
  // Every check fires before any communication, on every rank alike.
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> made = MpiCommunicator::Dup(MPI_COMM_WORLD, "world");
  ASSERT_TRUE(made.ok()) << made.status();
  MpiCommunicator& c = **made;
  const int n = c.size();

  Tensor in = Tensor::Zeros({n * 4 + 1, 2}, DType::kF32);
  Tensor out = Tensor::Zeros({4, 2}, DType::kF32);
  absl::Status st = c.ReduceScatterSum(in, out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("dim 0 times the group size"));

  Tensor wrong_cols = Tensor::Zeros({n * 4, 3}, DType::kF32);
  st = c.AllGather(out, wrong_cols);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;

  Tensor bf16 = Tensor::Zeros({8}, DType::kBF16);
  st = c.AllReduceSum(bf16);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("sums of bf16"));

  Tensor t = Tensor::Zeros({4}, DType::kF32);
  st = c.Broadcast(t, n);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(absl::StrCat("root ", n, " is outside")));

  Tensor undefined;
  EXPECT_EQ(c.AllReduceSum(undefined).code(), absl::StatusCode::kInvalidArgument);

  // Overlapping buffers that are not the in-place layout.
  if (n > 1) {
    Tensor big = Tensor::Zeros({n * 2, 2}, DType::kF32);
    Tensor neighbours_shard = big.Slice((c.rank() + 1) % n * 2, 2);
    st = c.AllGather(neighbours_shard, big);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("overlaps the output"));
  }

  // A mesh that does not describe this MPI world.
  absl::StatusOr<Mesh> other = Mesh::Create({.dp = 2 * n, .pp = 1, .tp = 1}, 2 * n, 0);
  ASSERT_TRUE(other.ok());
  absl::StatusOr<MeshComms> comms = CreateMpiMeshComms(*other);
  EXPECT_EQ(comms.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(comms.status().message()), HasSubstr("does not match MPI rank"));

  // The communicator still works after the refusals.
  CheckAllReduce<float>(c, 5);
}

TEST(MpiCheckTest, ErrorCarriesMpiTextCallAndLine) {
  absl::Status st = FromMpi(MPI_ERR_TRUNCATE, "MPI_Recv(buf)", "x.cc", 12);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("truncat"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("in MPI_Recv(buf) at x.cc:12"));
  EXPECT_TRUE(FromMpi(MPI_SUCCESS, "x", "x.cc", 1).ok());
}

}  // namespace
}  // namespace baton
