// Tensor parallelism on CUDA, under mpiexec -n 2: (1) the tp collectives on
// device tensors (parallel/device_tp_collectives.h) — sum, max, all-gather,
// reduce-scatter, f32 and bf16, odd sizes — through the path the group
// chooses (NCCL with a GPU per rank, host-staged when ranks share a GPU)
// and through the host-staged path forced; (2) a tp=2 model on CUDA
// (RankTrainer: column/row-parallel, GQA split, vocab-parallel embedding and
// cross-entropy, SP off and on, tp_sum_grad of the norms, the grad norm
// over tp, AdamW) reproduces the single-rank CUDA run that every rank also
// trains itself: train.precision fp32 gives the losses to 1e-5 relative
// and every parameter slice to 1e-5 relative L2 (RMS floor 5e-6, as
// layout_invariance_mpitest); bf16 gives the losses to 1e-2 relative.
// lr 1e-3: at 1e-2 the random-token task turns chaotic within 4 steps and
// fp32 rounding alone moves params by 7e-5 relative (measured on the CPU).
// Works with both ranks on ONE GPU (the staged path) and prints the path
// chosen and every compared value. Skips (on every rank alike) without a
// GPU or with a world size other than 2.
// Run: mpiexec -n 2 build/tp_gpu_mpitest (ctest: tp_gpu_mpi_np2, label gpu).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/gpu.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cpu/convert.h"
#include "kernels/cuda/stream.h"
#include "launcher/config.h"
#include "engine/rank_trainer.h"
#include "launcher/train.h"
#include "parallel/device_tp_collectives.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "runtime/cuda_allocator.h"
#include "runtime/optimizer.h"
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

// The GPU of this rank (local rank mod the visible count, as baton train
// picks it) or why every test skips; every rank reaches the same verdict.
const std::string& SkipReason() {
  static const std::string* why = [] {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, WorldRank(), MPI_INFO_NULL, &node);
    int local_rank = 0;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    const int gpus = CudaDeviceCount();
    std::string mine;
    if (WorldSize() != 2) mine = absl::StrCat("needs 2 ranks, got ", WorldSize());
    if (mine.empty() && gpus == 0) mine = CudaDeviceSummary();  // "no GPU (why)"
    if (mine.empty()) {
      absl::Status st = SelectCudaDevice(local_rank % gpus);
      if (!st.ok()) mine = absl::StrCat("setup failed: ", st.ToString());
    }
    int ok = mine.empty() ? 1 : 0, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok && WorldRank() == 0) {
      std::printf("tp_gpu_mpitest: %d ranks, %d visible GPU(s): %s; rank 0 on GPU %d\n", WorldSize(), gpus,
                  CudaDeviceSummary().c_str(), local_rank % gpus);
    }
    if (!all_ok && mine.empty()) mine = "another rank cannot run the GPU tests";
    return new std::string(all_ok ? "" : mine);
  }();
  return *why;
}

#define REQUIRE_GPUS()                                                     \
  if (SkipReason().rfind("setup failed", 0) == 0) FAIL() << SkipReason(); \
  if (!SkipReason().empty()) GTEST_SKIP() << SkipReason()

// ---- (1) the collectives

Tensor DeviceFrom(const std::vector<float>& v, DType dtype) {
  const Shape shape{static_cast<int64_t>(v.size())};
  Tensor host = Tensor::Empty(shape, dtype);
  if (dtype == DType::kF32) {
    std::memcpy(host.raw(), v.data(), v.size() * sizeof(float));
  } else {
    cpu::F32ToBf16(v.data(), static_cast<int64_t>(v.size()), static_cast<uint16_t*>(host.raw()));
  }
  Tensor dev = Tensor::Empty(shape, dtype, DefaultCudaAllocator());
  dev.CopyFrom(host);
  return dev;
}

std::vector<float> HostFloats(const Tensor& dev) {
  Tensor host = Tensor::Empty(dev.shape(), dev.dtype());
  host.CopyFrom(dev);  // synchronises the stream the collectives ran on
  std::vector<float> out(static_cast<size_t>(dev.numel()));
  if (dev.dtype() == DType::kF32) {
    std::memcpy(out.data(), host.raw(), out.size() * sizeof(float));
  } else {
    cpu::Bf16ToF32(static_cast<const uint16_t*>(host.raw()), dev.numel(), out.data());
  }
  return out;
}

// "" when got equals want element for element (the inputs are small
// integers, exact in f32 and bf16, so every sum is exact), else the first
// difference and the count.
std::string Mismatch(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return absl::StrCat("size ", got.size(), " != ", want.size());
  int bad = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      if (bad++ == 0) first = absl::StrCat("index ", i, ": got ", got[i], ", want ", want[i]);
    }
  }
  return bad == 0 ? "" : absl::StrCat(first, " (", bad, " of ", got.size(), " differ)");
}

// Each rank's input is a formula of (rank, index), so each rank computes
// every expected output alone. Values < 128: exact in bf16, sums of 2 too.
float In(int rank, int64_t i) { return static_cast<float>((i * 7 + rank * 5) % 61 + rank); }

void CheckCollectives(DeviceTpCollectives& c, DType dtype) {
  const int n = c.size(), r = c.rank();
  for (int64_t m : {1, 19, 989}) {
    const std::string what = absl::StrCat(DTypeName(dtype), " m=", m, " via ", c.description());
    std::vector<float> mine(m), sum(m, 0.f), max(m, -1e30f);
    for (int64_t i = 0; i < m; ++i) {
      mine[i] = In(r, i);
      for (int q = 0; q < n; ++q) {
        sum[i] += In(q, i);
        max[i] = std::max(max[i], In(q, i));
      }
    }
    Tensor t = DeviceFrom(mine, dtype);
    ASSERT_TRUE(c.AllReduceSum(t).ok()) << what;
    EXPECT_EQ(Mismatch(HostFloats(t), sum), "") << "all-reduce sum " << what;
    t = DeviceFrom(mine, dtype);
    absl::Status st = c.AllReduceMax(t);
    ASSERT_TRUE(st.ok()) << what << ": " << st;
    EXPECT_EQ(Mismatch(HostFloats(t), max), "") << "all-reduce max " << what;
    // All-gather into [n·m]; then in place from this rank's slice.
    std::vector<float> gathered;
    for (int q = 0; q < n; ++q)
      for (int64_t i = 0; i < m; ++i) gathered.push_back(In(q, i));
    Tensor out = Tensor::Empty({n * m}, dtype, DefaultCudaAllocator());
    ASSERT_TRUE(c.AllGather(DeviceFrom(mine, dtype), out).ok()) << what;
    EXPECT_EQ(Mismatch(HostFloats(out), gathered), "") << "all-gather " << what;
    Tensor in_place = DeviceFrom(std::vector<float>(n * m, 0.f), dtype);
    in_place.Slice(r * m, m).CopyFrom(DeviceFrom(mine, dtype));
    Tensor shard = in_place.Slice(r * m, m);
    ASSERT_TRUE(c.AllGather(shard, in_place).ok()) << what;
    EXPECT_EQ(Mismatch(HostFloats(in_place), gathered), "") << "all-gather in place " << what;
    // Reduce-scatter of [n·m]: rank r gets the sum of rows [r·m, (r+1)·m).
    std::vector<float> full(n * m), scattered(m, 0.f);
    for (int64_t i = 0; i < n * m; ++i) full[i] = In(r, i);
    for (int64_t i = 0; i < m; ++i)
      for (int q = 0; q < n; ++q) scattered[i] += In(q, r * m + i);
    Tensor rs = Tensor::Empty({m}, dtype, DefaultCudaAllocator());
    ASSERT_TRUE(c.ReduceScatterSum(DeviceFrom(full, dtype), rs).ok()) << what;
    EXPECT_EQ(Mismatch(HostFloats(rs), scattered), "") << "reduce-scatter " << what;
  }
  // A host tensor is refused with a message naming the call, not a crash.
  Tensor host = Tensor::Empty({4}, dtype);
  absl::Status st = c.AllReduceSum(host);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

class TpGpuCollectives : public ::testing::TestWithParam<TpPath> {};
INSTANTIATE_TEST_SUITE_P(Paths, TpGpuCollectives, ::testing::Values(TpPath::kAuto, TpPath::kHostStaged),
                         [](const auto& info) { return info.param == TpPath::kAuto ? "auto" : "host_staged"; });

TEST_P(TpGpuCollectives, MatchTheHostFormulas) {
  REQUIRE_GPUS();
  auto host = MpiCommunicator::Dup(MPI_COMM_WORLD, "tp");
  ASSERT_TRUE(host.ok()) << host.status();
  auto c = DeviceTpCollectives::Create(**host, cuda::CurrentStream(), GetParam());
  ASSERT_TRUE(c.ok()) << c.status();
  if (WorldRank() == 0) std::printf("tp collectives (%s): %s\n", GetParam() == TpPath::kAuto ? "auto" : "forced",
                                    (*c)->description().c_str());
  for (DType d : {DType::kF32, DType::kBF16}) CheckCollectives(**c, d);
}

TEST(TpGpuCollectives, NcclRefusedWhenRanksShareADevice) {
  REQUIRE_GPUS();
  auto host = MpiCommunicator::Dup(MPI_COMM_WORLD, "tp");
  ASSERT_TRUE(host.ok()) << host.status();
  auto distinct = GroupOnDistinctDevices((*host)->comm());
  ASSERT_TRUE(distinct.ok()) << distinct.status();
  if (*distinct) GTEST_SKIP() << "every rank has its own GPU: NCCL is allowed here";
  auto c = DeviceTpCollectives::Create(**host, cuda::CurrentStream(), TpPath::kNccl);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(c.status().message()), ::testing::HasSubstr("distinct device"));
}

TEST(TpGpuCollectives, MismatchCanFail) {  // the checker's negative test (no GPU needed)
  EXPECT_EQ(Mismatch({1, 2, 3}, {1, 2, 3}), "");
  EXPECT_THAT(Mismatch({1, 2, 3}, {1, 2.0078125f, 3}), ::testing::HasSubstr("index 1"));
  EXPECT_THAT(Mismatch({1, 2}, {1, 2, 3}), ::testing::HasSubstr("size"));
}

// ---- (2) the model

absl::StatusOr<JobConfig> Config(int tp, bool sp, const std::string& precision) {
  const std::string toml = R"(
[model]
layers = 2
dim = 256
heads = 4
kv_heads = 2
ffn_dim = 160
vocab_size = 250
qkv_bias = true
tie_embeddings = false
[data]
path = "unused"
[train]
steps = 4
seq_len = 16
micro_batch_size = 2
global_batch_size = 4
lr = 1e-3
warmup_steps = 2
grad_clip = 0.5
device = "cuda"
)";
  return ParseJobConfig(toml, "tp_gpu_mpitest.toml",
                        {"parallel.tp=" + std::to_string(tp),
                         std::string("parallel.sequence_parallel=") + (sp ? "true" : "false"),
                         "train.precision=\"" + precision + "\""});
}

// Micro-batch j of step s: the same ids on every rank; every 13th target ignored.
void Batch(const JobConfig& c, int step, std::vector<Tensor>* tokens, std::vector<Tensor>* targets) {
  tokens->clear();
  targets->clear();
  std::mt19937_64 rng(1000 + step);
  std::uniform_int_distribution<int32_t> id(0, c.model.vocab_size - 1);
  const int64_t b = c.train.micro_batch_size, t = c.train.seq_len;
  for (int j = 0; j < c.train.global_batch_size / c.train.micro_batch_size; ++j) {
    Tensor x = Tensor::Empty({b, t}, DType::kI32), y = Tensor::Empty({b, t}, DType::kI32);
    for (int64_t i = 0; i < b * t; ++i) {
      x.data<int32_t>()[i] = id(rng);
      y.data<int32_t>()[i] = i % 13 == 12 ? -1 : id(rng);
    }
    tokens->push_back(x);
    targets->push_back(y);
  }
}

struct TrainedRun {
  std::vector<double> losses, norms;
  std::unique_ptr<RankTrainer> model;
};

absl::StatusOr<TrainedRun> TrainSteps(const JobConfig& c, MeshComms* comms, Device device) {
  TrainedRun run;
  BATON_ASSIGN_OR_RETURN(run.model, RankTrainer::Create(EngineConfigOf(c, device), comms, nullptr));
  std::vector<Tensor> tokens, targets;
  for (int s = 0; s < c.train.steps; ++s) {
    Batch(c, s, &tokens, &targets);
    double n = 0;
    for (const Tensor& y : targets)
      for (int64_t i = 0; i < y.numel(); ++i) n += y.data<int32_t>()[i] >= 0 ? 1 : 0;
    BATON_ASSIGN_OR_RETURN(const double loss, run.model->ForwardBackward(tokens, targets, 1.0 / n));
    BATON_ASSIGN_OR_RETURN(const double norm, run.model->ClipGradNorm(c.train.optimizer.grad_clip));
    BATON_RETURN_IF_ERROR(run.model->OptimizerStep(LearningRate(c.train.optimizer, s, c.train.steps)));
    run.losses.push_back(loss / n);
    run.norms.push_back(norm);
  }
  return run;
}

// "" when every got[i] is within rtol·|want[i]|, else the first mismatch.
std::string CompareCurve(const std::vector<double>& want, const std::vector<double>& got, double rtol) {
  if (want.size() != got.size()) return absl::StrCat("lengths ", want.size(), " != ", got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= rtol * std::abs(want[i]))) {
      return absl::StrCat("step ", i + 1, ": got ", got[i], ", want ", want[i], " (relative ",
                          std::abs(got[i] - want[i]) / std::abs(want[i]), " > ", rtol, ")");
    }
  }
  return "";
}

Tensor HostF32(const Tensor& t) {
  Tensor h = Tensor::Empty(t.shape(), t.dtype());
  h.CopyFrom(t);
  return h;
}

// The slice of the single-rank param `full` (f32 host) that `p` holds.
Tensor SliceOf(const Tensor& full, const Param& p) {
  if (p.shard_dim < 0) return full;
  Tensor out = Tensor::Empty(p.value.shape(), DType::kF32);
  const int64_t cols = full.rank() > 1 ? full.dim(1) : 1, out_cols = out.rank() > 1 ? out.dim(1) : 1;
  for (int64_t r = 0; r < out.dim(0); ++r) {
    for (int64_t c = 0; c < out_cols; ++c) {
      const int64_t fr = p.shard_dim == 0 ? r + p.shard_offset : r, fc = p.shard_dim == 1 ? c + p.shard_offset : c;
      out.data<float>()[r * out_cols + c] = full.data<float>()[fr * cols + fc];
    }
  }
  return out;
}

// "" when got is within relative L2 rtol of want, or its RMS error is
// under `rms` (see layout_invariance_mpitest: rounding-noise grads of a k
// bias get Adam steps of size lr), else both numbers.
std::string CompareSlice(const Tensor& want, const Tensor& got, double rtol, double rms) {
  if (want.shape() != got.shape()) return absl::StrCat("shape ", got.DebugString(), " vs ", want.DebugString());
  double num = 0, den = 0;
  for (int64_t k = 0; k < want.numel(); ++k) {
    const double d = double(got.data<float>()[k]) - want.data<float>()[k];
    num += d * d;
    den += double(want.data<float>()[k]) * want.data<float>()[k];
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num), err = std::sqrt(num / want.numel());
  if (rel <= rtol || err <= rms) return "";
  return absl::StrCat("relative L2 ", rel, " > ", rtol, ", RMS error ", err, " > ", rms);
}

class TpGpuModel : public ::testing::TestWithParam<std::tuple<bool, std::string>> {};
INSTANTIATE_TEST_SUITE_P(Layouts, TpGpuModel,
                         ::testing::Combine(::testing::Bool(), ::testing::Values("fp32", "bf16")),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "sp_" : "nosp_") + std::get<1>(info.param);
                         });

// The whole comparison for one layout on `device` (the CPU form checks
// this harness where CI has no GPU).
void CompareWithSingleRank(bool sp, const std::string& precision, Device device) {
  auto ref_config = Config(1, false, precision);
  auto tp_config = Config(2, sp, precision);
  ASSERT_TRUE(ref_config.ok()) << ref_config.status();
  ASSERT_TRUE(tp_config.ok()) << tp_config.status();
  absl::StatusOr<TrainedRun> ref = TrainSteps(*ref_config, nullptr, device);  // every rank trains the reference alone
  ASSERT_TRUE(ref.ok()) << ref.status();

  auto mesh = Mesh::Create({1, 1, 2}, WorldSize(), WorldRank());
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  auto comms = CreateMpiMeshComms(*mesh);
  ASSERT_TRUE(comms.ok()) << comms.status();
  absl::StatusOr<TrainedRun> tp = TrainSteps(*tp_config, &*comms, device);
  ASSERT_TRUE(tp.ok()) << tp.status();
  const int r = WorldRank();
  if (r == 0) std::printf("tp=2 %s %s on %s: tp collectives %s\n", sp ? "sp" : "nosp", precision.c_str(), DeviceName(device),
                          tp->model->tp_collectives().c_str());
  for (size_t s = 0; s < ref->losses.size() && r == 0; ++s) {  // the same numbers on every tp rank
    std::printf("[rank %d] %s %s step %zu: loss ref %.9g tp %.9g (rel %.2e), grad norm ref %.9g tp %.9g\n", r,
                sp ? "sp" : "nosp", precision.c_str(), s + 1, ref->losses[s], tp->losses[s],
                std::abs(tp->losses[s] - ref->losses[s]) / ref->losses[s], ref->norms[s], tp->norms[s]);
  }
  const bool fp32 = precision == "fp32";
  // bf16: both runs round activations to bf16 (8 bits) at different points
  // (partial sums over tp are rounded before they are added).
  EXPECT_EQ(CompareCurve(ref->losses, tp->losses, fp32 ? 1e-5 : 1e-2), "") << "losses, rank " << r;
  EXPECT_EQ(CompareCurve(ref->norms, tp->norms, fp32 ? 1e-4 : 5e-2), "") << "grad norms, rank " << r;

  // Every param slice against the single-rank param (f32 master weights).
  Model& ref_model = *ref->model->models()[0];
  Model& tp_model = *tp->model->models()[0];
  ASSERT_EQ(ref_model.params().size(), tp_model.params().size());
  double worst = 0, worst_rms = 0, k_bias_worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < tp_model.params().size(); ++i) {
    const Param& p = tp_model.params()[i];
    const Param& q = ref_model.params()[i];
    ASSERT_EQ(p.name, q.name);
    const Tensor want = SliceOf(HostF32(q.value), p), got = HostF32(p.value);
    double num = 0, den = 0;
    for (int64_t k = 0; k < want.numel(); ++k) {
      const double d = double(got.data<float>()[k]) - want.data<float>()[k];
      num += d * d;
      den += double(want.data<float>()[k]) * want.data<float>()[k];
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    // A k bias moves no loss (softmax is blind to q·bk), so its grads are
    // rounding noise that Adam turns into steps of up to lr: only bounded.
    const bool k_bias = p.name.size() > 8 && p.name.compare(p.name.size() - 8, 8, ".attn.bk") == 0;
    if (fp32) {
      EXPECT_EQ(CompareSlice(want, got, k_bias ? 1.0 : 1e-5, k_bias ? 0.5 * tp_config->train.optimizer.lr : 5e-6),
                "")
          << p.name << " (rank " << r << ")";
    }
    if (k_bias) {
      k_bias_worst = std::max(k_bias_worst, rel);
      continue;
    }
    if (rel > worst) {
      worst = rel;
      worst_rms = std::sqrt(num / want.numel());
      worst_name = p.name;
    }
  }
  std::printf("[rank %d] %s %s: worst param relative L2 %.3e, RMS error %.3e (%s); k biases (only bounded) %.3e\n",
              r, sp ? "sp" : "nosp", precision.c_str(), worst, worst_rms, worst_name.c_str(), k_bias_worst);
}

TEST_P(TpGpuModel, ReproducesTheSingleRankCudaRun) {
  REQUIRE_GPUS();
  const auto [sp, precision] = GetParam();
  CompareWithSingleRank(sp, precision, Device::kCuda);
}

// The same harness on the CPU backend (fp32, MPI tp collectives): runs in
// CI, so a broken checker or config shows without a GPU.
TEST(TpGpuModel, HarnessPassesOnTheCpu) {
  if (WorldSize() != 2) GTEST_SKIP() << "needs 2 ranks, got " << WorldSize();
  CompareWithSingleRank(/*sp=*/true, "fp32", Device::kCpu);
}

TEST(TpGpuModel, ComparisonsCanFail) {  // negative tests of the checkers (no GPU needed)
  EXPECT_EQ(CompareCurve({5.0, 4.0}, {5.0, 4.0 * (1 + 5e-6)}, 1e-5), "");
  EXPECT_THAT(CompareCurve({5.0, 4.0}, {5.0, 4.0 * (1 + 2e-5)}, 1e-5), ::testing::HasSubstr("step 2"));
  Tensor a = Tensor::Empty({4}, DType::kF32), b = Tensor::Empty({4}, DType::kF32);
  for (int i = 0; i < 4; ++i) a.data<float>()[i] = b.data<float>()[i] = 0.5f + i;
  EXPECT_EQ(CompareSlice(a, b, 1e-5, 5e-6), "");
  b.data<float>()[2] += 1e-3f;
  EXPECT_THAT(CompareSlice(a, b, 1e-5, 5e-6), ::testing::HasSubstr("relative L2"));
}

}  // namespace
}  // namespace baton

#else  // no CUDA in this build

TEST(TpGpu, NeedsCudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif
