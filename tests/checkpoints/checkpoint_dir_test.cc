// Tests of the checkpoint directory (checkpoints/checkpoint_dir.h): file
// names, the `latest` commit point, resume lookup and pruning.
#include "checkpoints/checkpoint_dir.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/checkpoints/temp_files.h"
#include "runtime/file_util.h"
#include "kernels/check.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() { return baton::MakeTempDir("ckpt_dir_test_"); }

void Touch(const std::string& path, const std::string& text = "x") {
  FILE* f = std::fopen(path.c_str(), "w");
  BATON_CHECK(f != nullptr);
  std::fputs(text.c_str(), f);
  std::fclose(f);
}

std::string Slurp(const std::string& path) { return ReadWholeFile(path).value_or("<missing>"); }

TEST(CheckpointDirTest, PathsAndSteps) {
  EXPECT_EQ(CheckpointPath("ckpt", 100), "ckpt/step_00000100.h5");
  EXPECT_EQ(CheckpointPath("ckpt/", 5), "ckpt/step_00000005.h5");
  EXPECT_EQ(CheckpointPath("ckpt", 123456789), "ckpt/step_123456789.h5");
  EXPECT_EQ(CheckpointStep("ckpt/step_00000100.h5"), 100);
  EXPECT_EQ(CheckpointStep("step_123456789.h5"), 123456789);
  EXPECT_EQ(CheckpointStep("step_.h5"), std::nullopt);
  EXPECT_EQ(CheckpointStep("step_12a.h5"), std::nullopt);
  EXPECT_EQ(CheckpointStep("step_00000001.h5.tmp"), std::nullopt);
  EXPECT_EQ(CheckpointStep("foo.h5"), std::nullopt);
  EXPECT_EQ(CheckpointStep("latest"), std::nullopt);
}

TEST(CheckpointDirTest, CommitLatestWritesTheFileNameAtomically) {
  std::string dir = MakeTempDir();
  ASSERT_TRUE(CommitLatest(dir, CheckpointPath(dir, 100)).ok());
  EXPECT_EQ(Slurp(dir + "/latest"), "step_00000100.h5\n");
  EXPECT_FALSE(Exists(dir + "/latest.tmp"));
  absl::Status bad = CommitLatest(dir, dir + "/model.h5");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Slurp(dir + "/latest"), "step_00000100.h5\n");  // unchanged
}

TEST(CheckpointDirTest, FindLatestPrefersTheCommitPointThenTheNewestFile) {
  std::string dir = MakeTempDir();
  absl::StatusOr<std::optional<std::string>> none = FindLatest(dir + "/does_not_exist");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, std::nullopt);
  ASSERT_TRUE(FindLatest(dir).ok());
  EXPECT_EQ(*FindLatest(dir), std::nullopt);  // empty dir

  Touch(CheckpointPath(dir, 100));
  Touch(CheckpointPath(dir, 200));
  Touch(dir + "/step_00000300.h5.tmp");  // an interrupted save is never a candidate
  EXPECT_EQ(*FindLatest(dir), CheckpointPath(dir, 200));  // no `latest` yet: newest file

  ASSERT_TRUE(CommitLatest(dir, CheckpointPath(dir, 100)).ok());
  EXPECT_EQ(*FindLatest(dir), CheckpointPath(dir, 100));  // the commit point wins

  std::remove(CheckpointPath(dir, 100).c_str());
  EXPECT_EQ(*FindLatest(dir), CheckpointPath(dir, 200));  // stale `latest`: fall back

  Touch(dir + "/latest", "../../etc/passwd\n");
  absl::StatusOr<std::optional<std::string>> garbage = FindLatest(dir);
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(garbage.status().message()), HasSubstr(dir + "/latest: names '../../etc/passwd'"));
}

TEST(CheckpointDirTest, PruneKeepsTheNewestAndTheCommittedOne) {
  std::string dir = MakeTempDir();
  for (int step : {10, 20, 30, 40, 50}) Touch(CheckpointPath(dir, step));
  Touch(dir + "/notes.txt");
  Touch(dir + "/step_00000060.h5.tmp");
  ASSERT_TRUE(CommitLatest(dir, CheckpointPath(dir, 20)).ok());

  ASSERT_TRUE(Prune(dir, 0).ok());  // 0 = keep all
  for (int step : {10, 20, 30, 40, 50}) EXPECT_TRUE(Exists(CheckpointPath(dir, step))) << step;

  ASSERT_TRUE(Prune(dir, 2).ok());
  EXPECT_FALSE(Exists(CheckpointPath(dir, 10)));
  EXPECT_TRUE(Exists(CheckpointPath(dir, 20)));  // `latest` names it
  EXPECT_FALSE(Exists(CheckpointPath(dir, 30)));
  EXPECT_TRUE(Exists(CheckpointPath(dir, 40)));
  EXPECT_TRUE(Exists(CheckpointPath(dir, 50)));
  EXPECT_TRUE(Exists(dir + "/notes.txt"));
  EXPECT_TRUE(Exists(dir + "/step_00000060.h5.tmp"));
  EXPECT_TRUE(Exists(dir + "/latest"));

  EXPECT_EQ(Prune(dir, -1).code(), absl::StatusCode::kInvalidArgument);
}

// A crashed save leaves step_*.h5.tmp (100 MB seen, issue 15) that nothing
// removed unless the same step was saved again: opening the directory does.
TEST(CheckpointDirTest, OpeningRemovesStaleTemporariesOnly) {
  std::string dir = MakeTempDir();
  Touch(CheckpointPath(dir, 10));
  Touch(dir + "/step_00000020.h5.tmp");
  Touch(dir + "/step_00000020.h5.tmp.room");
  Touch(dir + "/latest.tmp");
  Touch(dir + "/notes.tmp");
  Touch(dir + "/model.h5.tmp");
  ASSERT_TRUE(CommitLatest(dir, CheckpointPath(dir, 10)).ok());
  ASSERT_TRUE(OpenCheckpointDir(dir).ok());
  EXPECT_FALSE(Exists(dir + "/step_00000020.h5.tmp"));
  EXPECT_FALSE(Exists(dir + "/step_00000020.h5.tmp.room"));
  EXPECT_FALSE(Exists(dir + "/latest.tmp"));
  EXPECT_TRUE(Exists(CheckpointPath(dir, 10)));
  EXPECT_TRUE(Exists(dir + "/latest"));
  EXPECT_TRUE(Exists(dir + "/notes.tmp"));  // not ours
  EXPECT_TRUE(Exists(dir + "/model.h5.tmp"));
  EXPECT_EQ(*FindLatest(dir), CheckpointPath(dir, 10));
}

TEST(CheckpointDirTest, OpeningCreatesTheDirOrSaysWhyNot) {
  std::string dir = MakeTempDir() + "/a/b";
  ASSERT_TRUE(OpenCheckpointDir(dir).ok());
  EXPECT_TRUE(Exists(dir));
  Touch(dir + "/file");
  absl::Status st = OpenCheckpointDir(dir + "/file");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("checkpoint.dir " + dir + "/file: cannot write there"));
  EXPECT_EQ(std::string(st.message()).find('\n'), std::string::npos);
}

}  // namespace
}  // namespace baton
