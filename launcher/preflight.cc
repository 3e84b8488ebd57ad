// Pre-run checks of the job's output folders (see preflight.h).
#include "launcher/preflight.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

absl::Status CheckWritableDir(const std::string& key, const std::string& dir, int rank) {
  // Probe the folder, or the nearest one above it that exists: nothing is
  // created here (a run that fails later must not leave empty folders).
  std::error_code ec;
  std::filesystem::path at(dir.empty() ? "." : dir);
  while (!std::filesystem::exists(at, ec) && at.has_parent_path() && at != at.parent_path()) at = at.parent_path();
  if (!std::filesystem::exists(at, ec)) at = ".";
  if (!std::filesystem::is_directory(at, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot create ", dir, ": ", at.string(), " is not a folder"));
  }
  const std::string probe = (at / absl::StrCat(".baton_write_probe.", ::getpid(), ".", rank)).string();
  std::FILE* f = std::fopen(probe.c_str(), "w");
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": cannot create ", dir, ": ", at.string(),
                                                   " is not writable: ", std::strerror(errno)));
  }
  const bool wrote = std::fputs("baton\n", f) >= 0;
  const bool closed = std::fclose(f) == 0;
  std::remove(probe.c_str());
  if (!wrote || !closed) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": cannot write to ", at.string(), ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status CheckOutputsWritable(const JobConfig& config, int rank) {
  if (!config.checkpoint.dir.empty()) {
    BATON_RETURN_IF_ERROR(CheckWritableDir("checkpoint.dir", config.checkpoint.dir, rank));
  }
  if (!config.output.metrics.empty()) {  // rank 0 writes it; every rank checks, so all fail alike
    std::filesystem::path p(config.output.metrics);
    BATON_RETURN_IF_ERROR(
        CheckWritableDir("output.metrics", p.has_parent_path() ? p.parent_path().string() : ".", rank));
  }
  return absl::OkStatus();
}

std::string OutOfMemoryAdvice(const JobConfig& config) {
  return absl::StrCat("out of host memory (std::bad_alloc) with train.micro_batch_size=",
                      config.train.micro_batch_size, ", train.seq_len=", config.train.seq_len,
                      ": lower train.micro_batch_size, set recompute.policy=\"selective\" or \"full\", "
                      "or split the model over more ranks (parallel.pp, parallel.tp)");
}

}  // namespace baton
