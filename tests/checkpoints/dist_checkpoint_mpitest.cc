// Distributed checkpoints under mpiexec: slices written by many ranks make
// the same logical file as one process writing whole tensors (read back by
// the single-process reader, bitwise), read back under any other slicing;
// a tiling with a gap or an overlap, a mismatched read and a missing file
// are errors on every rank, and a failed write leaves nothing behind.
#include <mpi.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "checkpoints/dist_checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

int Rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int Size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// A directory every rank shares (rank 0's pid).
fs::path Dir() {
  int pid = Rank() == 0 ? static_cast<int>(::getpid()) : 0;
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  fs::path d = fs::temp_directory_path() / ("baton_dist_ckpt_" + std::to_string(pid));
  if (Rank() == 0) fs::create_directories(d);
  MPI_Barrier(MPI_COMM_WORLD);
  return d;
}

// The logical tensors, the same on every rank.
std::vector<CheckpointTensor> Logical() {
  std::mt19937 gen(42);
  std::normal_distribution<float> dist;
  std::vector<CheckpointTensor> out;
  for (auto [name, shape] : std::vector<std::pair<std::string, Shape>>{{"params/embed", {13, 6}},
                                                                        {"params/layers.0.attn.wo", {6, 10}},
                                                                        {"adam/m/layers.0.attn.wo", {6, 10}},
                                                                        {"params/final_norm", {6}}}) {
    Tensor t = Tensor::Empty(shape, DType::kF32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
    out.push_back({name, t});
  }
  Tensor steps = Tensor::Empty({5}, DType::kI32);
  for (int i = 0; i < 5; ++i) steps.data<int32_t>()[i] = 100 + i;
  out.push_back({"state/counts", steps});
  return out;
}

// Rows [begin, end) along dim of t, as a fresh contiguous tensor.
Tensor SliceOf(const Tensor& t, int dim, int64_t begin, int64_t end) {
  Shape s = t.shape();
  s[dim] = end - begin;
  Tensor out = Tensor::Empty(s, t.dtype());
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= t.dim(i);
  for (int i = dim + 1; i < t.rank(); ++i) inner *= t.dim(i);
  const size_t e = DTypeSize(t.dtype());
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(static_cast<char*>(out.raw()) + o * (end - begin) * inner * e,
                static_cast<const char*>(t.raw()) + (o * t.dim(dim) + begin) * inner * e, (end - begin) * inner * e);
  }
  return out;
}

// This rank's share of t split unevenly over n ranks along dim (or empty).
std::vector<TensorShard> Split(const CheckpointTensor& ct, int dim, int rank, int n) {
  const int64_t len = ct.tensor.dim(dim);
  const int64_t begin = len * rank / n, end = len * (rank + 1) / n;
  if (begin == end) return {};
  return {TensorShard{ct.name, ct.tensor.shape(), dim, begin, SliceOf(ct.tensor, dim, begin, end)}};
}

std::vector<TensorShard> WriteLayout(const std::vector<CheckpointTensor>& logical) {
  std::vector<TensorShard> mine;
  const int r = Rank(), n = Size();
  auto add = [&](std::vector<TensorShard> s) { mine.insert(mine.end(), s.begin(), s.end()); };
  add(Split(logical[0], 0, r, n));  // vocab rows
  add(Split(logical[1], 1, r, n));  // row-parallel columns
  add(Split(logical[2], 0, r, n));
  if (r == n - 1) mine.push_back({logical[3].name, logical[3].tensor.shape(), -1, 0, logical[3].tensor});
  if (r == 0) mine.push_back({logical[4].name, logical[4].tensor.shape(), -1, 0, logical[4].tensor});
  return mine;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(DistCheckpoint, SlicesMakeTheLogicalFileAndReadBackInAnyLayout) {
  const fs::path path = Dir() / "ok.h5";
  const std::vector<CheckpointTensor> logical = Logical();
  const std::string long_config(100000, 'x');
  ASSERT_TRUE(WriteShardedCheckpoint(MPI_COMM_WORLD, path.string(), 7, WriteLayout(logical),
                                     {{"config", long_config}, {"sampler", "{}"}}).ok());
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  // The single-process reader sees whole tensors, bitwise.
  auto whole = ReadCheckpoint(path.string());
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->step, 7);
  EXPECT_EQ(whole->attrs.at("config"), long_config);
  ASSERT_EQ(whole->tensors.size(), logical.size());
  for (const CheckpointTensor& ct : logical) {
    ASSERT_NE(whole->Find(ct.name), nullptr) << ct.name;
    EXPECT_TRUE(SameBits(whole->Find(ct.name)->tensor, ct.tensor)) << ct.name;
  }
  // Read with another slicing: embed along dim 1, wo along dim 0 in reverse rank order.
  const int r = Rank(), n = Size();
  std::vector<TensorShard> read = Split(logical[0], 1, r, n);
  std::vector<TensorShard> wo = Split(logical[1], 0, n - 1 - r, n);
  read.insert(read.end(), wo.begin(), wo.end());
  std::vector<Tensor> want;
  for (TensorShard& s : read) {
    want.push_back(s.local.Clone());
    std::memset(s.local.raw(), 0, s.local.nbytes());
  }
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  ASSERT_TRUE(ReadShardedCheckpoint(MPI_COMM_WORLD, path.string(), read, &step, &attrs).ok());
  EXPECT_EQ(step, 7);
  EXPECT_EQ(attrs.at("sampler"), "{}");
  for (size_t i = 0; i < read.size(); ++i) EXPECT_TRUE(SameBits(read[i].local, want[i])) << read[i].name;
}

TEST(DistCheckpoint, ReadsASingleProcessFile) {
  const fs::path path = Dir() / "single.h5";
  const std::vector<CheckpointTensor> logical = Logical();
  if (Rank() == 0) {
    CheckpointData data;
    data.step = 3;
    data.tensors = logical;
    ASSERT_TRUE(WriteCheckpoint(path.string(), data).ok());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::vector<TensorShard> read = Split(logical[1], 1, Rank(), Size());
  Tensor want = read.empty() ? Tensor() : read[0].local.Clone();
  for (TensorShard& s : read) std::memset(s.local.raw(), 0, s.local.nbytes());
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  ASSERT_TRUE(ReadShardedCheckpoint(MPI_COMM_WORLD, path.string(), read, &step, &attrs).ok());
  EXPECT_EQ(step, 3);
  if (!read.empty()) {
    EXPECT_TRUE(SameBits(read[0].local, want));
  }
}

TEST(DistCheckpoint, BadTilingsAreRefusedOnEveryRankAndLeaveNothing) {
  const fs::path path = Dir() / "bad.h5";
  const std::vector<CheckpointTensor> logical = Logical();
  // A gap: the last rank's slice of embed is missing (with one rank: the tail rows).
  std::vector<TensorShard> gap = Split(logical[0], 0, Rank(), Size());
  if (Size() == 1) gap = {TensorShard{logical[0].name, logical[0].tensor.shape(), 0, 0, SliceOf(logical[0].tensor, 0, 0, 10)}};
  if (Size() > 1 && Rank() == Size() - 1) gap.clear();
  absl::Status st = WriteShardedCheckpoint(MPI_COMM_WORLD, path.string(), 1, gap, {});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("params/embed"));
  // An overlap: every rank writes the whole of final_norm.
  std::vector<TensorShard> twice = {{logical[3].name, logical[3].tensor.shape(), 0, 0, logical[3].tensor}};
  const fs::path path2 = Dir() / "bad2.h5";
  st = WriteShardedCheckpoint(MPI_COMM_WORLD, path2.string(), 1, twice, {});
  if (Size() > 1) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("overlap"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  EXPECT_EQ(fs::exists(path2), Size() == 1);  // one rank writing it whole is a valid tiling
  EXPECT_FALSE(fs::exists(path2.string() + ".tmp"));
}

TEST(DistCheckpoint, ReadErrorsNameTheTensorOnEveryRank) {
  const fs::path path = Dir() / "ok_for_errors.h5";
  const std::vector<CheckpointTensor> logical = Logical();
  ASSERT_TRUE(WriteShardedCheckpoint(MPI_COMM_WORLD, path.string(), 2, WriteLayout(logical), {}).ok());
  int64_t step = 0;
  std::map<std::string, std::string> attrs;
  // Only the last rank asks for a tensor that is not there: every rank fails.
  std::vector<TensorShard> missing;
  if (Rank() == Size() - 1) missing.push_back({"adam/v/nope", {6}, -1, 0, Tensor::Empty({6}, DType::kF32)});
  absl::Status st = ReadShardedCheckpoint(MPI_COMM_WORLD, path.string(), missing, &step, &attrs);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("adam/v/nope"));
  std::vector<TensorShard> wrong = {{"params/final_norm", {7}, -1, 0, Tensor::Empty({7}, DType::kF32)}};
  st = ReadShardedCheckpoint(MPI_COMM_WORLD, path.string(), wrong, &step, &attrs);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("shape [6] != expected [7]"));
  st = ReadShardedCheckpoint(MPI_COMM_WORLD, (Dir() / "absent.h5").string(), wrong, &step, &attrs);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("absent.h5"));
}

}  // namespace
}  // namespace baton
