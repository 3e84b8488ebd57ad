// NcclCommunicator on real GPUs: one rank per GPU (cudaSetDevice(local
// rank)), the NCCL unique id handed round over MPI by Create, and every
// operation checked on device tensors against values computed on the host.
// The inputs are small integers, so every sum is exact in f32 and in bf16
// and the checks are equalities: any lost, duplicated or misplaced element
// shows. Skips (on every rank alike) with fewer than 2 ranks, or fewer
// visible GPUs than ranks on a node (CI has none: the skip is the CPU path).
// Run: mpiexec -n 2 build/nccl_gpu_mpitest (ctest: nccl_gpu_mpi_np2, label gpu).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cpu/convert.h"
#include "kernels/gpu.h"
#include "parallel/nccl_communicator.h"
#include "parallel/peer_watch.h"
#include "runtime/cuda_allocator.h"
#include "runtime/tensor.h"

namespace baton {
namespace {

int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int WorldSize() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// The communicator and its stream, made once for the whole binary (NCCL
// init costs ~0.1-1 s), or the reason every test skips.
struct Env {
  std::string skip;  // non-empty: why the tests skip
  int local_rank = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<NcclCommunicator> comm;
};

Env& TheEnv() {
  static Env* env = [] {
    auto* e = new Env();
    const int size = WorldSize();
    MPI_Comm node;  // ranks sharing this host: the local rank picks the GPU
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, WorldRank(), MPI_INFO_NULL, &node);
    int local_size = 0;
    MPI_Comm_rank(node, &e->local_rank);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    const int gpus = CudaDeviceCount();
    // Every rank must reach the same verdict, or the collectives below hang.
    int ok = size >= 2 && gpus >= local_size ? 1 : 0, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
      e->skip = "needs >= 2 ranks and one GPU per rank on each node: " + std::to_string(size) +
                " ranks, " + std::to_string(local_size) + " on this node, " + std::to_string(gpus) +
                " GPUs visible (" + CudaDeviceSummary() + ")";
      return e;
    }
    int made = 1, all_made = 0;
    std::string why;
    if (absl::Status st = SelectCudaDevice(e->local_rank); !st.ok()) {
      made = 0;
      why = st.ToString();
    } else if (cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking) != cudaSuccess) {
      made = 0;
      why = "cudaStreamCreate failed";
    } else {
      absl::StatusOr<std::unique_ptr<NcclCommunicator>> c =
          NcclCommunicator::Create(MPI_COMM_WORLD, e->stream, "world");
      if (c.ok()) {
        e->comm = std::move(*c);
      } else {
        made = 0;
        why = c.status().ToString();
      }
    }
    MPI_Allreduce(&made, &all_made, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_made) e->skip = "setup failed on some rank" + (why.empty() ? "" : ": " + why);
    return e;
  }();
  return *env;
}

// A failed setup is a failure, not a skip: GPUs were there.
#define NCCL_TEST_SETUP()                                                      \
  Env& env = TheEnv();                                                         \
  if (!env.skip.empty() && env.skip.rfind("setup failed", 0) == 0) {           \
    FAIL() << env.skip;                                                        \
  }                                                                            \
  if (!env.skip.empty()) GTEST_SKIP() << env.skip;                             \
  NcclCommunicator& comm = *env.comm;                                          \
  const int rank = comm.rank(), size = comm.size();                            \
  (void)rank;                                                                  \
  (void)size

// Host values -> a device tensor of `dtype` (f32 or bf16; values must be
// exact in bf16 for the equality checks).
Tensor ToDevice(const std::vector<float>& v, const Shape& shape, DType dtype) {
  Tensor host = Tensor::Empty(shape, dtype);
  if (dtype == DType::kF32) {
    std::memcpy(host.raw(), v.data(), v.size() * sizeof(float));
  } else {
    cpu::F32ToBf16(v.data(), static_cast<int64_t>(v.size()), static_cast<uint16_t*>(host.raw()));
  }
  Tensor dev = Tensor::Empty(shape, dtype, DefaultCudaAllocator());
  dev.CopyFrom(host);  // synchronous for host memory
  return dev;
}

// Waits for the communicator's stream, then copies back to f32 host values.
std::vector<float> ToHost(NcclCommunicator& comm, const Tensor& dev) {
  EXPECT_TRUE(comm.Synchronize().ok());
  Tensor host = Tensor::Empty(dev.shape(), dev.dtype());
  host.CopyFrom(dev);
  std::vector<float> out(static_cast<size_t>(dev.numel()));
  if (dev.dtype() == DType::kF32) {
    std::memcpy(out.data(), host.raw(), out.size() * sizeof(float));
  } else {
    cpu::Bf16ToF32(static_cast<const uint16_t*>(host.raw()), dev.numel(), out.data());
  }
  return out;
}

// Element-by-element equality with the first mismatch named.
::testing::AssertionResult Equal(const std::vector<float>& got, const std::vector<float>& want,
                                 const char* what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": " << got.size() << " elements, expected "
                                         << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << got[i] << ", expected "
                                           << want[i] << " (rank " << WorldRank() << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

class NcclGpu : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, NcclGpu, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& i) {
                           return std::string(DTypeName(i.param));
                         });

// Rank r contributes (r + 1)·(i % 7 + 1) at element i: sums stay below 256
// for up to 8 ranks (exact in bf16).
float Contribution(int r, int64_t i) { return static_cast<float>((r + 1) * (i % 7 + 1)); }

TEST_P(NcclGpu, AllReduceSumMatchesHostSum) {
  NCCL_TEST_SETUP();
  const DType dt = GetParam();
  for (int64_t n : {int64_t{1}, int64_t{4099}, int64_t{1} << 20}) {  // odd, large: several NCCL chunks
    std::vector<float> mine(n), want(n, 0.f);
    for (int64_t i = 0; i < n; ++i) {
      mine[i] = Contribution(rank, i);
      for (int r = 0; r < size; ++r) want[i] += Contribution(r, i);
    }
    Tensor t = ToDevice(mine, {n}, dt);
    ASSERT_TRUE(comm.AllReduceSum(t).ok());
    ASSERT_TRUE(Equal(ToHost(comm, t), want, "all_reduce_sum")) << "n " << n;
  }
}

TEST_P(NcclGpu, ReduceScatterSumGivesEachRankItsRowsOfTheSum) {
  NCCL_TEST_SETUP();
  const DType dt = GetParam();
  const int64_t m = 37, cols = 5;  // shard [m, cols], full [size·m, cols]
  const int64_t full_n = size * m * cols;
  std::vector<float> mine(full_n), sum(full_n, 0.f);
  for (int64_t i = 0; i < full_n; ++i) {
    mine[i] = Contribution(rank, i);
    for (int r = 0; r < size; ++r) sum[i] += Contribution(r, i);
  }
  Tensor in = ToDevice(mine, {size * m, cols}, dt);
  Tensor out = ToDevice(std::vector<float>(m * cols, -1.f), {m, cols}, dt);
  ASSERT_TRUE(comm.ReduceScatterSum(in, out).ok());
  const std::vector<float> want(sum.begin() + rank * m * cols, sum.begin() + (rank + 1) * m * cols);
  ASSERT_TRUE(Equal(ToHost(comm, out), want, "reduce_scatter_sum"));
}

TEST_P(NcclGpu, AllGatherConcatenatesShardsInRankOrder) {
  NCCL_TEST_SETUP();
  const DType dt = GetParam();
  const int64_t m = 13, cols = 3;
  // Shard of rank r: r·16 + (i % 16), distinct per rank and exact in bf16.
  auto value = [](int r, int64_t i) { return static_cast<float>(r * 16 + i % 16); };
  std::vector<float> mine(m * cols), want(size * m * cols);
  for (int64_t i = 0; i < m * cols; ++i) mine[i] = value(rank, i);
  for (int r = 0; r < size; ++r)
    for (int64_t i = 0; i < m * cols; ++i) want[r * m * cols + i] = value(r, i);
  Tensor in = ToDevice(mine, {m, cols}, dt);
  Tensor out = ToDevice(std::vector<float>(size * m * cols, -1.f), {size * m, cols}, dt);
  ASSERT_TRUE(comm.AllGather(in, out).ok());
  ASSERT_TRUE(Equal(ToHost(comm, out), want, "all_gather"));

  // In place: this rank's shard is a view of the output.
  Tensor full = ToDevice(std::vector<float>(size * m * cols, -1.f), {size * m, cols}, dt);
  Tensor shard = full.Slice(rank * m, m);
  shard.CopyFrom(in);  // on the op stream, not the communicator's
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(comm.AllGather(shard, full).ok());
  ASSERT_TRUE(Equal(ToHost(comm, full), want, "all_gather in place"));
}

TEST_P(NcclGpu, BroadcastCopiesTheRootsTensorToEveryRank) {
  NCCL_TEST_SETUP();
  const DType dt = GetParam();
  const int64_t n = 1001;
  for (int root : {0, size - 1}) {
    auto value = [](int r, int64_t i) { return static_cast<float>(r * 32 + i % 32); };
    std::vector<float> mine(n), want(n);
    for (int64_t i = 0; i < n; ++i) {
      mine[i] = value(rank, i);
      want[i] = value(root, i);
    }
    Tensor t = ToDevice(mine, {n}, dt);
    ASSERT_TRUE(comm.Broadcast(t, root).ok());
    ASSERT_TRUE(Equal(ToHost(comm, t), want, "broadcast")) << "root " << root;
  }
}

TEST_P(NcclGpu, GroupedRingExchangeDeliversEachNeighboursTensor) {
  NCCL_TEST_SETUP();
  const DType dt = GetParam();
  const int64_t n = 777;
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  auto value = [](int r, int64_t i) { return static_cast<float>(r * 8 + i % 8 + 1); };
  std::vector<float> mine(n), want(n);
  for (int64_t i = 0; i < n; ++i) {
    mine[i] = value(rank, i);
    want[i] = value(prev, i);
  }
  Tensor send = ToDevice(mine, {n}, dt);
  Tensor recv = ToDevice(std::vector<float>(n, -1.f), {n}, dt);
  // The last rank posts late: a request that completed before its transfer
  // (an event recorded before the group was enqueued) would let rank 0 read
  // the -1 fill.
  if (rank == size - 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(comm.GroupStart().ok());
  absl::StatusOr<CommRequestPtr> s = comm.ISend(send, next, 3);
  absl::StatusOr<CommRequestPtr> r = comm.IRecv(recv, prev, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->Wait().code(), absl::StatusCode::kFailedPrecondition);  // group still open
  ASSERT_TRUE(comm.GroupEnd().ok());
  ASSERT_TRUE((*s)->Wait().ok());
  ASSERT_TRUE((*r)->Wait().ok());
  // Read back on another stream, without Synchronize: only Wait orders it.
  Tensor host = Tensor::Empty({n}, dt);
  host.CopyFrom(recv);
  std::vector<float> got(n);
  if (dt == DType::kF32) {
    std::memcpy(got.data(), host.raw(), n * sizeof(float));
  } else {
    cpu::Bf16ToF32(static_cast<const uint16_t*>(host.raw()), n, got.data());
  }
  ASSERT_TRUE(Equal(got, want, "ring exchange"));
}

TEST_P(NcclGpu, OneWaySendAndReceiveWithoutAGroup) {
  NCCL_TEST_SETUP();
  const DType dt = GetParam();
  const int64_t n = 4096 + 3;
  std::vector<float> payload(n);
  for (int64_t i = 0; i < n; ++i) payload[i] = static_cast<float>(i % 200);
  if (rank == 0) {
    Tensor t = ToDevice(payload, {n}, dt);
    absl::StatusOr<CommRequestPtr> s = comm.ISend(t, 1, 0);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->Wait().ok());
  } else if (rank == 1) {
    Tensor t = ToDevice(std::vector<float>(n, -1.f), {n}, dt);
    absl::StatusOr<CommRequestPtr> r = comm.IRecv(t, 0, 0);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)->Wait().ok());
    ASSERT_TRUE(Equal(ToHost(comm, t), payload, "send 0 -> 1"));
  }
  ASSERT_TRUE(comm.Barrier().ok());
}

TEST(NcclGpuChecks, BadArgumentsAreInvalidArgumentNotAHang) {
  NCCL_TEST_SETUP();
  Tensor dev = Tensor::Zeros({8}, DType::kF32, DefaultCudaAllocator());
  EXPECT_EQ(comm.Broadcast(dev, size).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.Broadcast(dev, -1).code(), absl::StatusCode::kInvalidArgument);
  Tensor host = Tensor::Zeros({8}, DType::kF32);
  EXPECT_EQ(comm.AllReduceSum(host).code(), absl::StatusCode::kInvalidArgument);  // not on the GPU
  Tensor wrong = Tensor::Zeros({3}, DType::kF32, DefaultCudaAllocator());  // not size·m rows
  EXPECT_EQ(comm.ReduceScatterSum(dev, wrong).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.GroupEnd().code(), absl::StatusCode::kFailedPrecondition);  // none open
  ASSERT_TRUE(comm.Barrier().ok());
  EXPECT_STREQ(comm.backend(), "nccl");
}

// The watchdog: rank 0 enqueues an all-reduce that rank 1 never joins; its
// wait must end after parallel.timeout_s (3 s here) with DeadlineExceeded,
// the communicator aborted (later calls refused, not sent to NCCL), where
// it used to block in cudaStreamSynchronize forever.
TEST(NcclGpuWatchdog, AStuckCollectiveIsAbortedAfterTheDeadline) {
  NCCL_TEST_SETUP();
  ASSERT_TRUE(EnablePeerWatch(MPI_COMM_WORLD, 3).ok());
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> c =
      NcclCommunicator::Create(MPI_COMM_WORLD, env.stream, "watchdog");
  ASSERT_TRUE(c.ok()) << c.status();
  if (rank == 0) {
    Tensor dev = Tensor::Zeros({1024}, DType::kF32, DefaultCudaAllocator());
    ASSERT_TRUE((*c)->AllReduceSum(dev).ok());
    const auto t0 = std::chrono::steady_clock::now();
    const absl::Status st = (*c)->Synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
    EXPECT_NE(st.message().find("watchdog"), std::string_view::npos) << st;
    EXPECT_GE(s, 3.0);
    EXPECT_LT(s, 15.0);
    std::printf("[ measured ] stuck all-reduce aborted after %.2f s: %s\n", s, std::string(st.message()).c_str());
    EXPECT_EQ((*c)->AllReduceSum(dev).code(), absl::StatusCode::kUnavailable);
  }
  MPI_Barrier(MPI_COMM_WORLD);  // rank 1 waits here while rank 0's collective times out
  c->reset();
  DisablePeerWatch();
}

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(NcclGpu, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif  // BATON_HAVE_CUDA
