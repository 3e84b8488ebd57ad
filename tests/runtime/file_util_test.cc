// ReadWholeFile: every byte of a binary file (NULs, no trailing newline,
// larger than one read buffer), an empty file, and the errors a reader
// passes on to the user: a missing path is NotFound naming it, a directory
// is InvalidArgument naming it.
#include "runtime/file_util.h"

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/file_util_test_" + name; }

TEST(FileUtilTest, ReadsEveryByte) {
  std::string bytes;
  for (int i = 0; i < 200003; ++i) bytes.push_back(static_cast<char>((i * 131) % 256));
  const std::string path = TempPath("binary");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
  absl::StatusOr<std::string> got = ReadWholeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  std::fclose(std::fopen(path.c_str(), "wb"));
  EXPECT_EQ(*ReadWholeFile(path), "");
}

TEST(FileUtilTest, ErrorsNameThePath) {
  const std::string missing = TempPath("does_not_exist");
  absl::StatusOr<std::string> got = ReadWholeFile(missing);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), missing + ": No such file or directory");
  got = ReadWholeFile(::testing::TempDir());
  EXPECT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), ::testing::HasSubstr(::testing::TempDir()));
}

}  // namespace
}  // namespace baton
