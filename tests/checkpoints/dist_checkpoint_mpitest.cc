// Distributed checkpoints under mpiexec (np 1, 2, 3, 4): slices written by
// many ranks make the same logical file as one process writing whole
// tensors (read back by the single-process reader, bitwise), and read back
// under any other slicing, bitwise; both the parallel-HDF5 path and the
// serial fallback (slices through rank 0, independent reads) are run in
// every combination. A tiling with a gap, an overlap or no writer, a bad
// slice on one rank, a reserved attribute, a missing directory, file or
// tensor and a mismatched read are errors on every rank naming the tensor
// or file, and a failed write leaves nothing at PATH or PATH.tmp.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "checkpoints/dist_checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/parallel/mpi_test_util.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A directory every rank shares.
fs::path Dir() { return SharedTempDir("baton_dist_ckpt_"); }

// Removes the shared directory once every rank is done with it.
class RemoveDir : public ::testing::Environment {
 public:
  void TearDown() override {
    const fs::path d = Dir();
    MPI_Barrier(MPI_COMM_WORLD);
    if (WorldRank() == 0) fs::remove_all(d);
  }
};
const auto* const kRemoveDir = ::testing::AddGlobalTestEnvironment(new RemoveDir);

// Nothing under PATH or PATH.tmp, as every rank sees it after the call.
void ExpectNothingAt(const fs::path& path) {
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_FALSE(fs::exists(path)) << path;
  EXPECT_FALSE(fs::exists(path.string() + ".tmp")) << path;
}

// The logical tensors, the same on every rank (seeded), random bits in
// every dtype: odd sizes, a 3-dim f64, a scalar, an empty tensor.
std::vector<CheckpointTensor> Logical() {
  std::mt19937 gen(42);
  std::normal_distribution<double> dist;
  std::vector<CheckpointTensor> out;
  auto add = [&](std::string name, Shape shape, DType dtype) {
    Tensor t = Tensor::Empty(shape, dtype);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (dtype == DType::kF32) t.data<float>()[i] = static_cast<float>(dist(gen));
      if (dtype == DType::kF64) t.data<double>()[i] = dist(gen);
      if (dtype == DType::kI32) t.data<int32_t>()[i] = static_cast<int32_t>(gen());
    }
    out.push_back({std::move(name), t});
  };
  const int64_t n = WorldSize();
  add("params/embed", {13, 6}, DType::kF32);                 // 0: rows over all ranks (uneven)
  add("params/layers.0.attn.wo", {6, 11}, DType::kF32);      // 1: columns over all ranks
  add("adam/m/layers.0.attn.wo", {6, 11}, DType::kF32);      // 2: rows over max(1, n-1) ranks
  add("params/final_norm", {6}, DType::kF32);                // 3: replicated, the last rank writes
  add("state/counts", {5}, DType::kI32);                     // 4: rank 0 whole
  add("adam/v/layers.0.mlp.w", {3, 4, 2 * n + 1}, DType::kF64);  // 5: dim 2, two slices per rank + one
  add("state/scalar", {}, DType::kF64);                      // 6: scalar, rank 0
  add("params/empty", {0, 4}, DType::kF32);                  // 7: no elements, dim 1 over all ranks
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

TensorShard Piece(const CheckpointTensor& ct, int dim, int64_t begin, int64_t end, bool write = true) {
  return TensorShard{ct.name, ct.tensor.shape(), dim, begin, SliceOf(ct.tensor, dim, begin, end), write};
}
TensorShard Whole(const CheckpointTensor& ct, bool write = true) {
  return TensorShard{ct.name, ct.tensor.shape(), -1, 0, ct.tensor.Clone(), write};
}

// Part `part` of `parts` along dim (uneven: floor split), or nothing if it is empty.
std::vector<TensorShard> Split(const CheckpointTensor& ct, int dim, int part, int parts) {
  if (part < 0 || part >= parts) return {};
  const int64_t len = ct.tensor.dim(dim);
  const int64_t begin = len * part / parts, end = len * (part + 1) / parts;
  if (begin == end) return {};
  return {Piece(ct, dim, begin, end)};
}

std::vector<TensorShard> WriteLayout(const std::vector<CheckpointTensor>& t) {
  std::vector<TensorShard> mine;
  const int r = WorldRank(), n = WorldSize();
  auto add = [&](std::vector<TensorShard> s) { mine.insert(mine.end(), s.begin(), s.end()); };
  add(Split(t[0], 0, r, n));
  add(Split(t[1], 1, r, n));
  add(Split(t[2], 0, r, std::max(1, n - 1)));
  mine.push_back(Whole(t[3], /*write=*/r == n - 1));
  if (r == 0) mine.push_back(Whole(t[4]));
  // Columns r and n + r of the last dim, and the final column on rank 0: 1 to 3 slices per rank.
  mine.push_back(Piece(t[5], 2, r, r + 1));
  mine.push_back(Piece(t[5], 2, n + r, n + r + 1));
  if (r == 0) mine.push_back(Piece(t[5], 2, 2 * n, 2 * n + 1));
  if (r == 0) mine.push_back(Whole(t[6]));
  mine.push_back(Piece(t[7], 1, 4 * r / n, 4 * (r + 1) / n));  // some ranks hold an empty slice of it
  return mine;
}

// Another slicing of the same tensors: what was split by rows is read by
// columns and vice versa, in reverse rank order, or whole on every rank.
std::vector<TensorShard> ReadLayout(const std::vector<CheckpointTensor>& t) {
  std::vector<TensorShard> mine;
  const int r = WorldRank(), n = WorldSize();
  auto add = [&](std::vector<TensorShard> s) { mine.insert(mine.end(), s.begin(), s.end()); };
  add(Split(t[0], 1, n - 1 - r, n));
  mine.push_back(Whole(t[1]));
  add(Split(t[2], 1, r, n));
  add(Split(t[3], 0, r, n));
  add(Split(t[4], 0, n - 1 - r, n));
  add(Split(t[5], 1, r, n));
  add(Split(t[5], 0, r, n));  // the same tensor twice on one rank, along another dim
  mine.push_back(Whole(t[6]));
  if (r == 0) mine.push_back(Whole(t[7]));
  return mine;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Zeroes the destinations, returning what they held (the expected values).
std::vector<Tensor> Blank(std::vector<TensorShard>& shards) {
  std::vector<Tensor> want;
  for (TensorShard& s : shards) {
    want.push_back(s.local.Clone());
    if (s.local.nbytes() > 0) std::memset(s.local.raw(), 0, s.local.nbytes());
  }
  return want;
}

using Writer = std::function<absl::Status(MPI_Comm, const std::string&, int64_t, const std::vector<TensorShard>&,
                                          const std::map<std::string, std::string>&)>;
using Reader = std::function<absl::Status(MPI_Comm, const std::string&, std::vector<TensorShard>&, int64_t*,
                                          std::map<std::string, std::string>*)>;

// Reads `path` back through `read` in ReadLayout's slicing: the step, and
// every slice bitwise. Returns the attributes read.
std::map<std::string, std::string> ExpectReadsBackSliced(const Reader& read, const fs::path& path,
                                                         const std::vector<CheckpointTensor>& logical, int64_t step) {
  std::vector<TensorShard> shards = ReadLayout(logical);
  const std::vector<Tensor> want = Blank(shards);
  int64_t got_step = 0;
  std::map<std::string, std::string> attrs;
  const absl::Status st = read(MPI_COMM_WORLD, path.string(), shards, &got_step, &attrs);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(got_step, step);
  for (size_t i = 0; st.ok() && i < shards.size(); ++i)
    EXPECT_TRUE(SameBits(shards[i].local, want[i])) << shards[i].name;
  return attrs;
}

struct Path2 {
  const char* name;
  Writer write;
  Reader read;
};
const std::vector<Path2>& Paths() {
  static const std::vector<Path2> paths = {
      {"parallel", WriteShardedCheckpoint, ReadShardedCheckpoint},
      {"via_rank0", WriteShardedCheckpointViaRank0, ReadShardedCheckpointIndependently}};
  return paths;
}

TEST(DistCheckpoint, ReportsItsIoPath) {
  EXPECT_STREQ(DistributedCheckpointIo(), "parallel HDF5 (MPI-IO)");  // Debian's libhdf5-openmpi-dev
}

TEST(DistCheckpoint, SlicesMakeTheLogicalFileAndReadBackInAnyLayout) {
  const std::vector<CheckpointTensor> logical = Logical();
  std::string long_config;
  for (int i = 0; long_config.size() < 200000; ++i) long_config += "[model]\nlayers = " + std::to_string(i) + "\n";
  const std::map<std::string, std::string> attrs_in = {
      {"config", long_config}, {"sampler", "{\"epoch\":1}"}, {"note", "ünïcode ✓"}, {"empty", ""}};
  for (const Path2& w : Paths()) {
    for (const Path2& r : Paths()) {
      SCOPED_TRACE(std::string("written ") + w.name + ", read " + r.name);
      const fs::path path = Dir() / (std::string("ok_") + w.name + "_" + r.name + ".h5");
      const absl::Status written = w.write(MPI_COMM_WORLD, path.string(), 7, WriteLayout(logical), attrs_in);
      ASSERT_TRUE(written.ok()) << written;
      EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
      // The single-process reader sees every tensor whole, bitwise, and nothing else.
      if (WorldRank() == 0) {
        auto whole = ReadCheckpoint(path.string());
        ASSERT_TRUE(whole.ok()) << whole.status();
        EXPECT_EQ(whole->step, 7);
        EXPECT_EQ(whole->attrs, attrs_in);
        ASSERT_EQ(whole->tensors.size(), logical.size());
        for (const CheckpointTensor& ct : logical) {
          ASSERT_NE(whole->Find(ct.name), nullptr) << ct.name;
          EXPECT_TRUE(SameBits(whole->Find(ct.name)->tensor, ct.tensor)) << ct.name;
        }
      }
      EXPECT_EQ(ExpectReadsBackSliced(r.read, path, logical, 7), attrs_in);
    }
  }
}

TEST(DistCheckpoint, ListsTheTensorsOnEveryRank) {
  const std::vector<CheckpointTensor> logical = Logical();
  const fs::path path = Dir() / "list.h5";
  ASSERT_TRUE(WriteShardedCheckpoint(MPI_COMM_WORLD, path.string(), 1, WriteLayout(logical), {}).ok());
  auto names = ListCheckpointTensors(MPI_COMM_WORLD, path.string());
  ASSERT_TRUE(names.ok()) << names.status();
  std::vector<std::string> want;
  for (const CheckpointTensor& ct : logical) want.push_back(ct.name);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*names, want);
  auto missing = ListCheckpointTensors(MPI_COMM_WORLD, (Dir() / "absent_list.h5").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("absent_list.h5"));
}

TEST(DistCheckpoint, ReadsASingleProcessFileInSlices) {
  const fs::path path = Dir() / "single.h5";
  const std::vector<CheckpointTensor> logical = Logical();
  if (WorldRank() == 0) {
    CheckpointData data;
    data.step = 3;
    data.tensors = logical;
    data.attrs = {{"config", std::string(70000, 'c')}};
    ASSERT_TRUE(WriteCheckpoint(path.string(), data).ok());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  for (const Path2& r : Paths()) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(ExpectReadsBackSliced(r.read, path, logical, 3)["config"], std::string(70000, 'c'));
  }
}

TEST(DistCheckpoint, ReplacesAStaleTemporaryFile) {
  const fs::path path = Dir() / "stale.h5";
  if (WorldRank() == 0) std::ofstream(path.string() + ".tmp") << "left by a crashed save";
  MPI_Barrier(MPI_COMM_WORLD);
  ASSERT_TRUE(WriteShardedCheckpoint(MPI_COMM_WORLD, path.string(), 5, WriteLayout(Logical()), {}).ok());
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
}

// Every rank gets `code` with `text` in the message, and nothing is left.
void ExpectFailsEverywhere(const absl::Status& st, absl::StatusCode code, const std::string& text, const fs::path& path) {
  EXPECT_EQ(st.code(), code) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(text)) << st;
  ExpectNothingAt(path);
}

TEST(DistCheckpoint, BadTilingsAreRefusedOnEveryRankAndLeaveNothing) {
  const std::vector<CheckpointTensor> t = Logical();
  const int r = WorldRank(), n = WorldSize();
  for (const Path2& w : Paths()) {
    SCOPED_TRACE(w.name);
    const fs::path path = Dir() / (std::string("bad_") + w.name + ".h5");
    // A gap: the last part of embed is not written (with one rank: its tail rows).
    std::vector<TensorShard> gap = n == 1 ? std::vector<TensorShard>{Piece(t[0], 0, 0, 10)} : Split(t[0], 0, r, n);
    if (n > 1 && r == n - 1) gap.clear();
    absl::Status st = w.write(MPI_COMM_WORLD, path.string(), 1, gap, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "tensor params/embed: not covered", path);
    // No writer: every rank holds final_norm as a replica with write = false.
    st = w.write(MPI_COMM_WORLD, path.string(), 1, {Whole(t[0], r == 0), Whole(t[3], false)}, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "tensor params/final_norm: not covered", path);
    // Two writers of a whole tensor (with one rank: two shards of it on that rank).
    std::vector<TensorShard> twice = {Whole(t[3])};
    if (n == 1) twice.push_back(Whole(t[3]));
    st = w.write(MPI_COMM_WORLD, path.string(), 1, twice, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "params/final_norm: written more than once (overlap)",
                          path);
    // Overlapping slices: rank 0 writes rows [0, 8) and [6, 13) of embed.
    std::vector<TensorShard> overlap;
    if (r == 0) overlap = {Piece(t[0], 0, 0, 8), Piece(t[0], 0, 6, 13)};
    st = w.write(MPI_COMM_WORLD, path.string(), 1, overlap, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "tensor params/embed: slices overlap at 6", path);
    // Ranks disagree on a shape.
    std::vector<TensorShard> disagree = WriteLayout(t);
    if (r == n - 1) disagree.push_back({"state/counts", {6}, -1, 0, Tensor::Empty({6}, DType::kI32), false});
    st = w.write(MPI_COMM_WORLD, path.string(), 1, disagree, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "state/counts: ranks 0 and", path);
    // A slice that does not fit its tensor.
    std::vector<TensorShard> misfit = WriteLayout(t);
    if (r == n - 1) misfit.push_back({"params/extra", {4, 4}, 0, 3, Tensor::Empty({2, 4}, DType::kF32)});
    st = w.write(MPI_COMM_WORLD, path.string(), 1, misfit, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "params/extra: rank", path);
  }
}

TEST(DistCheckpoint, OneRanksBadInputFailsEveryRankAndLeavesNothing) {
  const std::vector<CheckpointTensor> t = Logical();
  for (const Path2& w : Paths()) {
    SCOPED_TRACE(w.name);
    const fs::path path = Dir() / (std::string("bad_input_") + w.name + ".h5");
    // Only the last rank hands a bf16 slice (not a checkpoint dtype).
    std::vector<TensorShard> shards = WriteLayout(t);
    if (WorldRank() == WorldSize() - 1) shards.push_back({"params/bf16", {2}, -1, 0, Tensor::Empty({2}, DType::kBF16)});
    absl::Status st = w.write(MPI_COMM_WORLD, path.string(), 1, shards, {});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "params/bf16: dtype bf16", path);
    // A reserved attribute name: the file is created, then refused and removed.
    st = w.write(MPI_COMM_WORLD, path.string(), 1, WriteLayout(t), {{"step", "9"}});
    ExpectFailsEverywhere(st, absl::StatusCode::kInvalidArgument, "'step' is reserved", path);
    // A directory that does not exist.
    const fs::path nowhere = Dir() / "no_such_dir" / "x.h5";
    st = w.write(MPI_COMM_WORLD, nowhere.string(), 1, WriteLayout(t), {});
    EXPECT_FALSE(st.ok());
    EXPECT_THAT(std::string(st.message()), HasSubstr(nowhere.string()));
    ExpectNothingAt(nowhere);
  }
}

TEST(DistCheckpoint, ReadErrorsNameTheTensorOnEveryRank) {
  const fs::path path = Dir() / "ok_for_errors.h5";
  const std::vector<CheckpointTensor> t = Logical();
  ASSERT_TRUE(WriteShardedCheckpoint(MPI_COMM_WORLD, path.string(), 2, WriteLayout(t), {}).ok());
  const fs::path junk = Dir() / "junk.h5";
  if (WorldRank() == 0) std::ofstream(junk) << "not hdf5";
  const fs::path truncated = Dir() / "truncated.h5";
  if (WorldRank() == 0) {
    fs::copy_file(path, truncated, fs::copy_options::overwrite_existing);
    fs::resize_file(truncated, fs::file_size(truncated) / 2);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const bool last = WorldRank() == WorldSize() - 1;
  for (const Path2& r : Paths()) {
    SCOPED_TRACE(r.name);
    int64_t step = 0;
    std::map<std::string, std::string> attrs;
    // Only the last rank asks for a tensor that is not there: every rank fails.
    std::vector<TensorShard> missing = ReadLayout(t);
    if (last) missing.push_back({"adam/v/nope", {6}, -1, 0, Tensor::Empty({6}, DType::kF32)});
    absl::Status st = r.read(MPI_COMM_WORLD, path.string(), missing, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("reading adam/v/nope from " + path.string() + ": no such tensor"));
    // Shape, dtype and slice mismatches, on one rank only.
    std::vector<TensorShard> shape = ReadLayout(t);
    if (last) shape.push_back({"params/final_norm", {7}, -1, 0, Tensor::Empty({7}, DType::kF32)});
    st = r.read(MPI_COMM_WORLD, path.string(), shape, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()),
                HasSubstr("reading params/final_norm from " + path.string() + ": shape [6] != expected [7]"));
    std::vector<TensorShard> dtype = {{"state/counts", {5}, -1, 0, Tensor::Empty({5}, DType::kF32)}};
    st = r.read(MPI_COMM_WORLD, path.string(), dtype, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("state/counts from " + path.string() + ": dtype i32 != expected f32"));
    std::vector<TensorShard> misfit = {{"params/embed", {13, 6}, 0, 10, Tensor::Empty({4, 6}, DType::kF32)}};
    st = r.read(MPI_COMM_WORLD, path.string(), misfit, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("slice [4, 6] at offset 10 along dim 0 does not fit [13, 6]"));
    // A checkpoint of a model with fewer layers: the error says so.
    std::vector<TensorShard> deeper = ReadLayout(t);
    if (last) deeper.push_back({"adam/m/layers.1.attn.wo", {6, 11}, -1, 0, Tensor::Empty({6, 11}, DType::kF32)});
    st = r.read(MPI_COMM_WORLD, path.string(), deeper, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
    EXPECT_THAT(std::string(st.message()),
                HasSubstr("no such tensor; the checkpoint holds 1 layer (layers.0-0) but the model asks for "
                          "layers.1: it was written for a model of another shape (model.layers)"));
    // A truncated file: one line naming it, no source path.
    st = r.read(MPI_COMM_WORLD, truncated.string(), shape, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("checkpoint " + truncated.string() + ": a truncated or damaged HDF5 file"));
    EXPECT_EQ(std::string(st.message()).find(".cc:"), std::string::npos) << st;
    // A missing file and a file that is not HDF5.
    const std::string absent = (Dir() / "absent.h5").string();
    st = r.read(MPI_COMM_WORLD, absent, shape, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("checkpoint " + absent));
    st = r.read(MPI_COMM_WORLD, junk.string(), shape, &step, &attrs);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("junk.h5: not an HDF5 file"));
  }
}

}  // namespace
}  // namespace baton
