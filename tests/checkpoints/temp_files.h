// File helpers the single-process checkpoint tests share: a fresh
// temporary directory per test and an existence check, written once.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "gtest/gtest.h"
#include "kernels/check.h"

namespace baton {

// A new directory under gtest's TempDir, named `prefix` + a unique suffix.
inline std::string MakeTempDir(const std::string& prefix) {
  std::string templ = ::testing::TempDir() + "/" + prefix + "XXXXXX";
  BATON_CHECK(mkdtemp(templ.data()) != nullptr);
  return templ;
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace baton
