// Damaged checkpoint files: each must be one error line naming the file,
// within seconds (CTest's TIMEOUT, set for *_damaged_test in CMakeLists,
// catches a hang), with no crash and no absurd allocation. Inputs: every
// fuzzing finding kept under tests/fuzz/regressions/, plus the two root
// causes found there rebuilt by patching a freshly written checkpoint, so
// they stay covered if the writer's layout moves.
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kRegressions = std::string(BATON_SOURCE_DIR) + "/tests/fuzz/regressions";

std::vector<std::string> RegressionInputs() {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(kRegressions.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 3 && n.compare(n.size() - 3, 3, ".h5") == 0) names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Reads `path`, expecting one InvalidArgument line that names it, in under
// 10 s; returns the message.
std::string ExpectOneLineError(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<CheckpointData> out = ReadCheckpoint(path);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0);
  EXPECT_FALSE(out.ok());
  if (out.ok()) return "";
  const std::string msg(out.status().message());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << msg;
  EXPECT_THAT(msg, StartsWith("checkpoint " + path + ": "));
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_EQ(msg.find(".cc:"), std::string::npos) << "a source path is no help to the user: " << msg;
  return msg;
}

class RegressionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RegressionTest, IsOneLineErrorNamingTheFile) { ExpectOneLineError(kRegressions + "/" + GetParam()); }

INSTANTIATE_TEST_SUITE_P(Fuzz, RegressionTest, ::testing::ValuesIn(RegressionInputs()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param.substr(0, i.param.size() - 3);
                           for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

// The findings by name, with their root causes in the message.
TEST(CheckpointDamagedTest, KnownFindingsSayWhatIsBroken) {
  EXPECT_THAT(ExpectOneLineError(kRegressions + "/checkpoint_hdf5_heap_hang.h5"),
              HasSubstr("global heap free space of 0 bytes"));
  EXPECT_THAT(ExpectOneLineError(kRegressions + "/checkpoint-alloc-too-big.h5"),
              HasSubstr("an object header chunk of 468769910554920 bytes at byte 800, past the end at byte 11288"));
  EXPECT_THAT(ExpectOneLineError(kRegressions + "/checkpoint_attr_name_short.h5"),
              HasSubstr("an attribute name not of its stated length"));
}

// ---- the root causes, rebuilt on a fresh checkpoint

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

uint64_t Le(const std::string& b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(b[at + i])} << (8 * i);
  return v;
}

void PutLe(std::string& b, size_t at, int n, uint64_t v) {
  for (int i = 0; i < n; ++i) b[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string FreshCheckpoint() {
  char dir[] = "/tmp/baton_damaged_XXXXXX";
  EXPECT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/step_00000007.h5";
  CheckpointData d;
  d.step = 7;
  Tensor t = Tensor::Empty({3, 4}, DType::kF32);
  for (int i = 0; i < 12; ++i) t.data<float>()[i] = static_cast<float>(i);
  d.tensors.push_back({"params/embed", t});
  d.attrs["config"] = "[model]\nlayers = 1\n";
  EXPECT_TRUE(WriteCheckpoint(path, d).ok());
  EXPECT_TRUE(ReadCheckpoint(path).ok());
  return path;
}

// The walk must pass every valid checkpoint: all dtypes, scalars, empty
// tensors, deep names, a group large enough for a two-level B-tree, and
// string attributes spanning several global heap collections.
TEST(CheckpointDamagedTest, ValidCheckpointsOfEveryShapePass) {
  char dir[] = "/tmp/baton_damaged_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/step_00000001.h5";
  CheckpointData d;
  d.step = 1;
  d.tensors.push_back({"f64/scalar", Tensor::Empty({}, DType::kF64)});
  d.tensors.push_back({"i32/empty", Tensor::Empty({0, 5}, DType::kI32)});
  d.tensors.push_back({"i32/ids", Tensor::Empty({7}, DType::kI32)});
  d.tensors.push_back({"a/b/c/d/e/deep", Tensor::Empty({2, 3, 4}, DType::kF32)});
  for (const CheckpointTensor& t : d.tensors) std::memset(t.tensor.raw(), 0, t.tensor.nbytes());
  for (int i = 0; i < 400; ++i) {
    Tensor t = Tensor::Empty({2}, DType::kF32);
    t.data<float>()[0] = t.data<float>()[1] = static_cast<float>(i);
    d.tensors.push_back({"params/layers." + std::to_string(i) + ".w", t});
  }
  for (int i = 0; i < 30; ++i) d.attrs["note" + std::to_string(i)] = std::string(700 + 31 * i, 'a' + i % 26);
  ASSERT_TRUE(WriteCheckpoint(path, d).ok());
  absl::StatusOr<CheckpointData> back = ReadCheckpoint(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tensors.size(), d.tensors.size());
  EXPECT_EQ(back->attrs, d.attrs);
  EXPECT_EQ(back->Find("params/layers.399.w")->tensor.data<float>()[1], 399.0f);
}

// HDF5 1.10 walks a global heap's records by their sizes; a free-space
// record (index 0) of size 0 never advances and H5Aread spins forever.
TEST(CheckpointDamagedTest, GlobalHeapFreeSpaceOfZeroBytesIsRefused) {
  const std::string path = FreshCheckpoint();
  std::string b = Slurp(path);
  const size_t heap = b.find("GCOL");
  ASSERT_NE(heap, std::string::npos);
  const uint64_t size = Le(b, heap + 8, 8);
  size_t p = heap + 16;
  while (Le(b, p, 2) != 0) p += 16 + ((Le(b, p + 8, 8) + 7) & ~uint64_t{7});  // to the free-space record
  ASSERT_LT(p + 16, heap + size);
  PutLe(b, p + 8, 8, 0);
  Spit(path, b);
  EXPECT_THAT(ExpectOneLineError(path), HasSubstr("global heap free space of 0 bytes at byte " + std::to_string(p)));
}

// An object header continuation whose length is absurd: HDF5 mallocs it
// whole at H5Fopen.
TEST(CheckpointDamagedTest, HeaderContinuationPastTheFileIsRefused) {
  const std::string path = FreshCheckpoint();
  std::string b = Slurp(path);
  const uint64_t root = Le(b, 0x38 + 8, 8);  // superblock v0: root symbol table entry
  size_t m = root + 16;
  while (Le(b, m, 2) != 0x10) m += 8 + Le(b, m + 2, 2);  // to the continuation message
  PutLe(b, m + 8 + 8, 8, uint64_t{1} << 44);
  Spit(path, b);
  EXPECT_THAT(ExpectOneLineError(path), HasSubstr("an object header chunk of 17592186044416 bytes at byte"));
}

// Truncation anywhere after the superblock: always the one line.
TEST(CheckpointDamagedTest, EveryTruncationIsOneLine) {
  const std::string path = FreshCheckpoint();
  const std::string b = Slurp(path);
  for (size_t len = 0; len < b.size(); len += 97) {
    Spit(path, b.substr(0, len));
    ExpectOneLineError(path);
  }
}

}  // namespace
}  // namespace baton
