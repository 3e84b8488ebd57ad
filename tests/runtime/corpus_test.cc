// Corpus tokenizing: fortune-format splitting, directory expansion as the
// fortunes package lays it out, and the dataset TokenizeFiles writes.
#include "runtime/corpus.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/indexed_dataset.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      ("baton_corpus_" + std::string(info->name()) + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(SplitDocumentsTest, SplitsOnPercentLines) {
  EXPECT_THAT(SplitDocuments("a\n%\nb\nc\n%\n"), ElementsAre("a\n", "b\nc\n"));
  EXPECT_THAT(SplitDocuments("%\nfirst\n%\nsecond"),
              ElementsAre("first\n", "second"));            // no final newline
  EXPECT_THAT(SplitDocuments("x\n%"), ElementsAre("x\n"));  // "%" at EOF
}

TEST(SplitDocumentsTest, OnlyWholeLinePercentSeparates) {
  EXPECT_THAT(SplitDocuments("15% off\n%DCL-MEM-BAD\n %\n%%\n"),
              ElementsAre("15% off\n%DCL-MEM-BAD\n %\n%%\n"));
  EXPECT_THAT(SplitDocuments("one paragraph\n\nanother\n"),
              ElementsAre("one paragraph\n\nanother\n"));
}

TEST(SplitDocumentsTest, DropsBlankDocuments) {
  EXPECT_THAT(SplitDocuments("%\n%\n \t\n%\nz\n%\n\n"), ElementsAre("z\n"));
  EXPECT_TRUE(SplitDocuments("").empty());
}

TEST(ExpandInputsTest, DirectoryLikeFortunes) {
  const std::string dir = TestDir();
  WriteText(dir + "/b", "B\n");
  WriteText(dir + "/a", "A\n");
  WriteText(dir + "/a.dat", "strfile index");
  std::filesystem::create_symlink(dir + "/a", dir + "/a.u8");
  std::filesystem::create_directory(dir + "/sub");
  auto files = ExpandInputs({dir, dir + "/a.dat"});  // an explicit file is kept as given
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_THAT(*files, ElementsAre(dir + "/a", dir + "/b", dir + "/a.dat"));
}

TEST(ExpandInputsTest, Errors) {
  const std::string dir = TestDir();
  auto missing = ExpandInputs({dir + "/nope"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr(dir + "/nope: no such file or directory"));
  EXPECT_EQ(ExpandInputs({dir}).status().code(), absl::StatusCode::kInvalidArgument);  // empty dir
}

TEST(TokenizeFilesTest, OneFramedSequencePerDocument) {
  const std::string dir = TestDir();
  WriteText(dir + "/f1", "Hi\n%\nYo\n%\n");
  WriteText(dir + "/f2", "plain file\n");
  ByteTokenizer tok;
  auto stats = TokenizeFiles({dir + "/f1", dir + "/f2"}, tok, dir + "/out");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->files, 2);
  EXPECT_EQ(stats->documents, 3);
  EXPECT_EQ(stats->bytes, 3 + 3 + 11);
  EXPECT_EQ(stats->tokens, 17 + 3 * 2);
  auto ds = IndexedDataset::Open(dir + "/out");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->dtype(), IndexDType::kUInt16);
  EXPECT_EQ(ds->num_documents(), 3);
  EXPECT_EQ(ds->num_sequences(), 3);
  EXPECT_THAT(ds->Get(1), ElementsAre(256, 'Y', 'o', '\n', 257));
  EXPECT_EQ(ds->Get(2).size(), 13u);
}

TEST(TokenizeFilesTest, MissingInputWritesNothing) {
  const std::string dir = TestDir();
  ByteTokenizer tok;
  auto stats = TokenizeFiles({dir + "/absent"}, tok, dir + "/out");
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.idx"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.bin"));
}

// The real corpus, where the fortunes package is installed (it is in the
// baton toolchain image). Sizes are bounds, not exact: they move with the
// package version.
TEST(TokenizeFilesTest, FortunesCorpus) {
  const std::string fortunes = "/usr/share/games/fortunes";
  if (!std::filesystem::exists(fortunes + "/fortunes")) GTEST_SKIP() << "fortunes not installed";
  const std::string dir = TestDir();
  ByteTokenizer tok;
  auto stats = TokenizeFiles({fortunes}, tok, dir + "/fortunes");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->documents, 10000);
  EXPECT_GT(stats->bytes, 2000000);
  EXPECT_EQ(stats->tokens, stats->bytes + 2 * stats->documents);
  auto ds = IndexedDataset::Open(dir + "/fortunes");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->num_documents(), stats->documents);
  EXPECT_EQ(ds->num_tokens(), stats->tokens);
  std::printf("fortunes corpus: %lld files, %lld documents, %lld bytes, %lld tokens\n",
              static_cast<long long>(stats->files), static_cast<long long>(stats->documents),
              static_cast<long long>(stats->bytes), static_cast<long long>(stats->tokens));
}

}  // namespace
}  // namespace baton
