// Tests of HDF5 checkpoints (checkpoints/checkpoint.h): round trips keep
// every bit, failed writes leave nothing under the final name, bad files
// and mismatched tensors give errors naming the file and the tensor, and
// h5dump shows the logical tree.
#include "checkpoints/checkpoint.h"

#include <hdf5.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/checkpoints/temp_files.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() { return baton::MakeTempDir("ckpt_test_"); }

template <typename T>
Tensor Random(const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::Empty(shape, DTypeOf<T>());
  std::mt19937 rng(seed);
  T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if constexpr (std::is_integral_v<T>) p[i] = static_cast<T>(rng());
    else p[i] = std::normal_distribution<T>(0, 1)(rng);
  }
  return t;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

CheckpointData Data(int64_t step, std::vector<CheckpointTensor> tensors,
                    std::map<std::string, std::string> attrs = {}) {
  CheckpointData d;
  d.step = step;
  d.tensors = std::move(tensors);
  d.attrs = std::move(attrs);
  return d;
}

CheckpointData Sample() {
  CheckpointData d;
  d.step = 123456789012;  // beyond int32
  d.tensors.push_back({"params/layers.3.attn.wq", Random<float>({3, 5}, 1)});
  d.tensors.push_back({"adam/m/layers.3.attn.wq", Random<float>({3, 5}, 2)});
  d.tensors.push_back({"adam/v/layers.3.attn.wq", Random<float>({3, 5}, 3)});
  d.tensors.push_back({"params/embed", Random<double>({7}, 4)});
  d.tensors.push_back({"rng/state", Random<int32_t>({2, 3, 4}, 5)});
  d.tensors.push_back({"scalar", Random<float>({}, 6)});
  d.tensors.push_back({"params/empty", Tensor::Empty({0, 4}, DType::kF32)});
  d.attrs["config"] = "[model]\nlayers = 2\n# ünïcode\n" + std::string(100000, 'x');  // > 64 KB
  d.attrs["sampler"] = R"({"epoch": 1, "position": 17})";
  d.attrs["git_revision"] = "";
  return d;
}

TEST(CheckpointTest, RoundTripKeepsStepAttrsAndEveryBit) {
  std::string dir = MakeTempDir(), path = dir + "/step_00000010.h5";
  CheckpointData in = Sample();
  ASSERT_TRUE(WriteCheckpoint(path, in).ok());
  EXPECT_FALSE(Exists(path + ".tmp"));

  absl::StatusOr<CheckpointData> out = ReadCheckpoint(path);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->step, 123456789012);
  EXPECT_EQ(out->attrs, in.attrs);
  EXPECT_EQ(out->source, path);
  ASSERT_EQ(out->tensors.size(), in.tensors.size());
  for (size_t i = 1; i < out->tensors.size(); ++i) EXPECT_LT(out->tensors[i - 1].name, out->tensors[i].name);
  for (const CheckpointTensor& want : in.tensors) {
    const CheckpointTensor* got = out->Find(want.name);
    ASSERT_NE(got, nullptr) << want.name;
    EXPECT_TRUE(SameBits(got->tensor, want.tensor)) << want.name << " " << got->tensor.DebugString();
  }
  EXPECT_EQ(out->Find("scalar")->tensor.rank(), 0);
  EXPECT_EQ(out->Find("params/empty")->tensor.shape(), (Shape{0, 4}));
  EXPECT_EQ(out->Find("params/nope"), nullptr);
}

TEST(CheckpointTest, SpecialFloatValuesKeepTheirBits) {
  std::string dir = MakeTempDir(), path = dir + "/special.h5";
  Tensor f = Tensor::Empty({6}, DType::kF32);
  uint32_t nan_payload = 0x7fc01234u;
  float nan;
  std::memcpy(&nan, &nan_payload, 4);
  const float vals[] = {-0.0f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::infinity(),
                        nan, std::nextafter(1.0f, 2.0f), -std::numeric_limits<float>::max()};
  std::memcpy(f.raw(), vals, sizeof vals);
  Tensor d = Tensor::Empty({2}, DType::kF64);
  d.data<double>()[0] = std::nextafter(0.1, 1.0);
  d.data<double>()[1] = -std::numeric_limits<double>::denorm_min();
  ASSERT_TRUE(WriteCheckpoint(path, Data(1, {{"f", f}, {"d", d}})).ok());
  absl::StatusOr<CheckpointData> out = ReadCheckpoint(path);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(SameBits(out->Find("f")->tensor, f));
  EXPECT_TRUE(SameBits(out->Find("d")->tensor, d));
}

TEST(CheckpointTest, FailedWriteLeavesNothingUnderTheFinalName) {
  std::string dir = MakeTempDir(), path = dir + "/step_00000020.h5";
  CheckpointData bad = Sample();
  bad.tensors.push_back({"params/layers.0.norm", Tensor::Zeros({4}, DType::kBF16)});
  absl::Status s = WriteCheckpoint(path, bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("writing params/layers.0.norm to " + path + ".tmp"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("dtype bf16 is not supported"));
  EXPECT_FALSE(Exists(path));
  EXPECT_FALSE(Exists(path + ".tmp"));

  // A failed overwrite keeps the previous complete file.
  CheckpointData good = Sample();
  good.step = 7;
  ASSERT_TRUE(WriteCheckpoint(path, good).ok());
  EXPECT_FALSE(WriteCheckpoint(path, bad).ok());
  absl::StatusOr<CheckpointData> still = ReadCheckpoint(path);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->step, 7);

  // A directory that does not exist: the HDF5 create fails, named with the file.
  std::string nowhere = dir + "/missing/step_00000001.h5";
  absl::Status s2 = WriteCheckpoint(nowhere, good);
  EXPECT_FALSE(s2.ok());
  EXPECT_THAT(std::string(s2.message()), HasSubstr("H5Fcreate"));
  EXPECT_THAT(std::string(s2.message()), HasSubstr(nowhere + ".tmp"));
  EXPECT_FALSE(Exists(nowhere));
}

TEST(CheckpointTest, RejectsDuplicateNamesReservedAttrsAndBadNames) {
  std::string path = MakeTempDir() + "/x.h5";
  Tensor t = Random<float>({2}, 9);
  absl::Status dup = WriteCheckpoint(path, Data(0, {{"params/a", t}, {"params/a", t}}));
  EXPECT_THAT(std::string(dup.message()), HasSubstr("writing params/a to " + path + ".tmp: the name appears twice"));
  absl::Status reserved = WriteCheckpoint(path, Data(0, {}, {{"step", "3"}}));
  EXPECT_THAT(std::string(reserved.message()), HasSubstr("attribute name 'step' is reserved"));
  absl::Status empty_part = WriteCheckpoint(path, Data(0, {{"params//a", t}}));
  EXPECT_THAT(std::string(empty_part.message()), HasSubstr("writing params//a"));
  EXPECT_FALSE(Exists(path));
}

TEST(CheckpointTest, MissingAndForeignFilesGiveClearErrors) {
  std::string dir = MakeTempDir();
  absl::StatusOr<CheckpointData> missing = ReadCheckpoint(dir + "/step_100.h5");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "checkpoint " + dir + "/step_100.h5: No such file or directory");

  std::string text = dir + "/notes.h5";
  FILE* f = std::fopen(text.c_str(), "w");
  std::fputs("this is not HDF5\n", f);
  std::fclose(f);
  absl::StatusOr<CheckpointData> foreign = ReadCheckpoint(text);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(foreign.status().message(), "checkpoint " + text + ": not an HDF5 file");

  // A valid HDF5 file that is not a checkpoint.
  std::string plain = dir + "/plain.h5";
  hid_t h = H5Fcreate(plain.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(h, 0);
  H5Fclose(h);
  absl::StatusOr<CheckpointData> other = ReadCheckpoint(plain);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("not a baton checkpoint"));
}

TEST(CheckpointTest, TruncatedFileIsAnErrorNamingTheFile) {
  std::string path = MakeTempDir() + "/step_00000010.h5";
  ASSERT_TRUE(WriteCheckpoint(path, Sample()).ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(::truncate(path.c_str(), st.st_size / 2), 0);
  absl::StatusOr<CheckpointData> out = ReadCheckpoint(path);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  const std::string msg(out.status().message());
  EXPECT_THAT(msg, ::testing::StartsWith("checkpoint " + path + ": a truncated or damaged HDF5 file ("));
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_EQ(msg.find(".cc:"), std::string::npos) << "a source path is no help to the user: " << msg;
}

// Issue 15: a full disk printed a clear error, then HDF5 segfaulted at exit
// on the file whose close had failed. Now: one error naming the file and
// errno 28, nothing under PATH or PATH.tmp, the previous checkpoint intact,
// and this test binary exits cleanly (a crash at exit fails the run).
TEST(CheckpointTest, FullDiskIsOneErrorAndLeavesNothing) {
  const std::string dir = MakeTempDir();
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  const std::string previous = dir + "/step_00000001.h5", next = dir + "/step_00000002.h5";
  const CheckpointData small = Data(1, {{"params/w", Random<float>({64, 64}, 3)}});
  absl::Status st = WriteCheckpoint(previous, small);
  EXPECT_TRUE(st.ok()) << st;
  st = WriteCheckpoint(next, Data(2, {{"params/w", Random<float>({1024, 1024}, 4)}}));  // 4 MiB
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::StartsWith("checkpoint " + next + ": "));
  EXPECT_THAT(std::string(st.message()), HasSubstr("(errno 28: No space left on device)"));
  EXPECT_FALSE(Exists(next));
  EXPECT_FALSE(Exists(next + ".tmp"));
  absl::StatusOr<CheckpointData> back = ReadCheckpoint(previous);
  EXPECT_TRUE(back.ok()) << back.status();
  ::umount2(dir.c_str(), MNT_DETACH);
}

TEST(CheckpointTest, CopyIntoChecksShapeAndDtype) {
  std::string path = MakeTempDir() + "/step_00000100.h5";
  Tensor w = Random<float>({3, 5}, 11);
  ASSERT_TRUE(WriteCheckpoint(path, Data(100, {{"params/layers.3.attn.wq", w}})).ok());
  absl::StatusOr<CheckpointData> data = ReadCheckpoint(path);
  ASSERT_TRUE(data.ok()) << data.status();

  Tensor dst = Tensor::Zeros({3, 5}, DType::kF32);
  ASSERT_TRUE(CopyInto(*data, "params/layers.3.attn.wq", dst).ok());
  EXPECT_TRUE(SameBits(dst, w));

  Tensor wrong_shape = Tensor::Zeros({5, 3}, DType::kF32);
  absl::Status s = CopyInto(*data, "params/layers.3.attn.wq", wrong_shape);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "reading params/layers.3.attn.wq from " + path + ": shape [3, 5] != expected [5, 3]");
  EXPECT_EQ(wrong_shape.data<float>()[0], 0.0f);  // untouched

  Tensor wrong_dtype = Tensor::Zeros({3, 5}, DType::kF64);
  EXPECT_EQ(CopyInto(*data, "params/layers.3.attn.wq", wrong_dtype).message(),
            "reading params/layers.3.attn.wq from " + path + ": dtype f32 != expected f64");

  absl::Status missing = CopyInto(*data, "params/layers.4.attn.wq", dst);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "reading params/layers.4.attn.wq from " + path +
                                   ": no such tensor; the checkpoint holds 1 layer (layers.3-3) but the model asks "
                                   "for layers.4: it was written for a model of another shape (model.layers)");
  absl::Status other = CopyInto(*data, "params/lm_head", dst);
  EXPECT_EQ(other.message(), "reading params/lm_head from " + path +
                                 ": no such tensor; the checkpoint holds 1 tensors, none of that name: it was "
                                 "written for another model or configuration");
}

TEST(CheckpointTest, H5dumpShowsTheLogicalTree) {
  if (std::system("command -v h5dump >/dev/null 2>&1") != 0) GTEST_SKIP() << "h5dump not installed";
  std::string path = MakeTempDir() + "/step_00000010.h5";
  ASSERT_TRUE(WriteCheckpoint(path, Sample()).ok());
  FILE* p = popen(("h5dump -H " + path + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_THAT(out, HasSubstr("GROUP \"params\""));
  EXPECT_THAT(out, HasSubstr("GROUP \"adam\""));
  EXPECT_THAT(out, HasSubstr("GROUP \"m\""));
  EXPECT_THAT(out, HasSubstr("DATASET \"layers.3.attn.wq\""));
  EXPECT_THAT(out, HasSubstr("ATTRIBUTE \"step\""));
  EXPECT_THAT(out, HasSubstr("ATTRIBUTE \"config\""));
  EXPECT_THAT(out, HasSubstr("H5T_IEEE_F32LE"));
  EXPECT_THAT(out, HasSubstr("( 3, 5 )"));
  // And the full path form, as `h5dump -d` wants it:
  FILE* q = popen(("h5dump -d /params/layers.3.attn.wq -H " + path + " 2>&1").c_str(), "r");
  ASSERT_NE(q, nullptr);
  std::string one;
  while (size_t n = std::fread(buf, 1, sizeof buf, q)) one.append(buf, n);
  EXPECT_EQ(pclose(q), 0) << one;
  EXPECT_THAT(one, HasSubstr("DATASET \"/params/layers.3.attn.wq\""));
}

}  // namespace
}  // namespace baton
