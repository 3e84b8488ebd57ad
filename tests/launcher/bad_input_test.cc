// `baton train` fed what new users feed it by mistake, on the real binary
// (one process, and 3 ranks under mpiexec for a world that does not match
// the mesh): every case must end with exit status 2 (bad input, not a
// crash: no 134/139, no hang), one line on stderr naming the key, file or
// rank at fault, and nothing half-written (no file in the checkpoint
// folder, no metrics file). The table is the issue's list of faults; each case prints
// its measured time to exit.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/indexed_dataset.h"
#include "tests/launcher/baton_process.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using baton::testing::Outcome;
using baton::testing::ReadFile;

constexpr char kConfig[] = R"(
[model]
layers = 2
dim = 32
heads = 4
kv_heads = 2
ffn_dim = 48
vocab_size = 258
[data]
val_fraction = 0.05
[train]
steps = 2
seq_len = 24
micro_batch_size = 2
global_batch_size = 4
lr = 1e-2
warmup_steps = 1
log_every = 1
[checkpoint]
every = 0
resume = "none"
[output]
progress = "lines"
)";

// A dataset of 200 documents of ids in [first, first + 26) in `dtype`.
absl::Status WriteDataset(const fs::path& prefix, IndexDType dtype, int32_t first = 'a') {
  return baton::testing::WriteLetterCorpus(
      prefix, {.dtype = dtype, .documents = 200, .seed = 7, .first = first, .min_length = 30, .length_period = 7});
}

// Runs argv with stdout and stderr to separate files in `dir`; 120 s at most.
Outcome RunBaton(const std::vector<std::string>& argv, const fs::path& dir) {
  return baton::testing::RunToCompletion(argv, dir / "stdout.txt", dir / "stderr.txt", 120);
}

// The lines baton wrote to stderr (mpiexec's own report is not counted).
std::vector<std::string> BatonLines(const std::string& err) {
  std::vector<std::string> lines;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("baton", 0) == 0) lines.push_back(line);
  }
  return lines;
}

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = baton::testing::FreshRunDir("baton_bad_input_test", /*per_test=*/false);
    const absl::Status corpus = WriteDataset(dir_ / "corpus", IndexDType::kUInt16);
    ASSERT_TRUE(corpus.ok()) << corpus;
    std::ofstream(dir_ / "job.toml") << kConfig;
    baton::testing::AllowMpiexecHere();
    // A good checkpoint to spoil (and to resume with another model shape).
    const fs::path good = dir_ / "good";
    fs::create_directories(good);
    const Outcome r = RunBaton({BATON_BINARY, "train", "--config", (dir_ / "job.toml").string(), "--set",
                                "data.path=" + (dir_ / "corpus").string(), "checkpoint.dir=" + (good / "ckpt").string()},
                               good);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    ckpt_ = good / "ckpt" / "step_00000002.h5";
    ASSERT_TRUE(fs::exists(ckpt_));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // `baton train` with the case's --set entries (a run folder of its own),
  // under mpiexec -n `ranks` when ranks > 1.
  Outcome Train(const std::string& name, std::vector<std::string> sets, int ranks = 1) {
    case_ = dir_ / name;
    fs::create_directories(case_);
    std::vector<std::string> argv;
    if (ranks > 1) argv = {"mpiexec", "-n", std::to_string(ranks), "--bind-to", "none", "--oversubscribe"};
    argv.insert(argv.end(), {BATON_BINARY, "train", "--config", (dir_ / "job.toml").string(), "--set",
                             "data.path=" + (dir_ / "corpus").string(),
                             "checkpoint.dir=" + (case_ / "ckpt").string(),
                             "output.metrics=" + (case_ / "metrics.jsonl").string()});
    argv.insert(argv.end(), sets.begin(), sets.end());
    return RunBaton(argv, case_);
  }

  // Exit 2 within the limit, one baton line on stderr holding every
  // `names`, and nothing left in the run folder but the captured output.
  void ExpectRefused(const std::string& name, const Outcome& r, const std::vector<std::string>& names) {
    std::printf("[ measured ] %-28s exit %d after %.2f s\n", name.c_str(), r.rc, r.seconds);
    EXPECT_EQ(r.rc, 2) << r.out << r.err;
    const std::vector<std::string> lines = BatonLines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    for (const std::string& n : names) EXPECT_THAT(lines[0], HasSubstr(n)) << r.err;
    std::printf("             %s\n", lines[0].c_str());
    // The checkpoint folder may be made (it is checked before the model is
    // built) but must hold no file, not even a temporary.
    if (fs::exists(case_ / "ckpt")) {
      for (const auto& e : fs::recursive_directory_iterator(case_ / "ckpt")) ADD_FAILURE() << "left " << e.path();
    }
    EXPECT_FALSE(fs::exists(case_ / "metrics.jsonl")) << "metrics written for a refused job";
  }

  // A copy of the corpus with one of its files changed by `spoil`.
  fs::path SpoiledCorpus(const std::string& name, const std::string& ext,
                         const std::function<void(std::string&)>& spoil) {
    const fs::path p = dir_ / ("data_" + name);
    fs::copy_file(dir_ / "corpus.bin", p.string() + ".bin", fs::copy_options::overwrite_existing);
    fs::copy_file(dir_ / "corpus.idx", p.string() + ".idx", fs::copy_options::overwrite_existing);
    std::string bytes = ReadFile(p.string() + ext);
    spoil(bytes);
    std::ofstream(p.string() + ext, std::ios::binary | std::ios::trunc) << bytes;
    return p;
  }

  static fs::path dir_, ckpt_;
  fs::path case_;
};

fs::path BadInputTest::dir_;
fs::path BadInputTest::ckpt_;

TEST_F(BadInputTest, UnknownKey) {
  ExpectRefused("unknown key", Train("unknown_key", {"train.stepz=3"}), {"train.stepz"});
}

TEST_F(BadInputTest, MistypedValue) {
  ExpectRefused("mistyped value", Train("mistyped", {"train.steps=three"}), {"train.steps"});
}

TEST_F(BadInputTest, NegativeSize) {
  ExpectRefused("negative size", Train("negative", {"model.dim=-32"}), {"model.dim"});
}

TEST_F(BadInputTest, ZeroSize) {
  ExpectRefused("zero size", Train("zero", {"train.micro_batch_size=0"}), {"train.micro_batch_size"});
}

TEST_F(BadInputTest, MeshDoesNotDivide) {
  ExpectRefused("mesh does not divide", Train("mesh", {"parallel.tp=3"}), {"tp"});
}

TEST_F(BadInputTest, WorldIsNotTheMesh) {
  ExpectRefused("world 3 != dp·pp·tp 2", Train("world", {"parallel.dp=2"}, 3), {"3"});
}

TEST_F(BadInputTest, MissingDataFiles) {
  ExpectRefused("missing data files", Train("missing", {"data.path=" + (dir_ / "nope").string()}), {"nope.idx"});
}

TEST_F(BadInputTest, TruncatedIdx) {
  const fs::path p = SpoiledCorpus("short_idx", ".idx", [](std::string& b) { b.resize(b.size() - 13); });
  ExpectRefused("truncated .idx", Train("short_idx", {"data.path=" + p.string()}), {p.string() + ".idx"});
}

TEST_F(BadInputTest, ForeignIdx) {
  const fs::path p = SpoiledCorpus("foreign_idx", ".idx", [](std::string& b) { b.assign(b.size(), 'x'); });
  ExpectRefused("foreign .idx", Train("foreign_idx", {"data.path=" + p.string()}), {p.string() + ".idx"});
}

TEST_F(BadInputTest, TruncatedBin) {
  const fs::path p = SpoiledCorpus("short_bin", ".bin", [](std::string& b) { b.resize(b.size() / 2); });
  ExpectRefused("truncated .bin", Train("short_bin", {"data.path=" + p.string()}), {p.string() + ".bin"});
}

TEST_F(BadInputTest, TruncatedCheckpoint) {
  const fs::path c = dir_ / "short.h5";
  std::string bytes = ReadFile(ckpt_);
  bytes.resize(bytes.size() / 2);
  std::ofstream(c, std::ios::binary) << bytes;
  ExpectRefused("truncated checkpoint", Train("short_ckpt", {"checkpoint.resume=" + c.string()}), {c.string()});
}

TEST_F(BadInputTest, ForeignCheckpoint) {
  const fs::path c = dir_ / "foreign.h5";
  std::ofstream(c) << "{\"this\": \"is not an HDF5 file\"}\n";
  ExpectRefused("foreign checkpoint", Train("foreign_ckpt", {"checkpoint.resume=" + c.string()}), {c.string()});
}

TEST_F(BadInputTest, CheckpointOfAnotherShape) {
  ExpectRefused("checkpoint of another shape",
                Train("shape", {"checkpoint.resume=" + ckpt_.string(), "model.ffn_dim=64"}), {ckpt_.string()});
}

TEST_F(BadInputTest, UnwritableCheckpointDir) {
  // /proc refuses new files even to root (CI runs as root: chmod would not do).
  ExpectRefused("unwritable checkpoint.dir", Train("unwritable", {"checkpoint.dir=/proc/baton_ckpt"}),
                {"checkpoint.dir", "/proc"});
}

TEST_F(BadInputTest, UnwritableMetricsFolder) {
  ExpectRefused("unwritable output.metrics", Train("unwritable_m", {"output.metrics=/proc/baton/m.jsonl"}),
                {"output.metrics", "/proc"});
}

TEST_F(BadInputTest, JobLargerThanMemory) {
  // About 13 B parameters: far more than any CI machine's RAM, refused
  // from the memory model before the model is built.
  const Outcome r = Train("too_big", {"model.dim=8192", "model.heads=64", "model.kv_heads=8", "model.ffn_dim=28672",
                                      "model.layers=16", "train.micro_batch_size=2"});
  ExpectRefused("job larger than memory", r, {"does not fit", "rank 0", "train.micro_batch_size"});
}

TEST_F(BadInputTest, TokenIdsPastVocab) {
  const fs::path p = dir_ / "wide";
  const absl::Status w = WriteDataset(p, IndexDType::kUInt16, /*first=*/250);  // ids up to 275 > vocab 258
  ASSERT_TRUE(w.ok()) << w;
  ExpectRefused("token ids past vocab_size", Train("past_vocab", {"data.path=" + p.string()}),
                {p.string() + ".bin", "275", "model.vocab_size=258"});
}

TEST_F(BadInputTest, Int64IdsBeyondInt32) {
  const fs::path p = dir_ / "wide64";
  const absl::Status w = WriteDataset(p, IndexDType::kInt64);
  ASSERT_TRUE(w.ok()) << w;
  // One id of 2^31 + 5: read as int32 it would wrap to a negative id.
  std::string bin = ReadFile(p.string() + ".bin");
  const int64_t big = (int64_t{1} << 31) + 5;
  std::memcpy(bin.data() + 8 * 10, &big, 8);
  std::ofstream(p.string() + ".bin", std::ios::binary | std::ios::trunc) << bin;
  ExpectRefused("int64 id >= 2^31", Train("int64", {"data.path=" + p.string(), "model.vocab_size=300"}),
                {p.string() + ".bin", "2147483653"});
}

}  // namespace
}  // namespace baton
