// Checks run before the first training step so that a run does not spend
// its compute and then fail at the first checkpoint: the folders a job
// writes to (checkpoint.dir, output.metrics' folder) exist or can be
// created, and accept a file. Every rank checks (every rank writes its
// share of a checkpoint); on a shared file system they all get the same
// answer, so bad input stays bad input on every rank.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "launcher/config.h"

namespace baton {

// Writes then removes a probe file in `dir`, or in the nearest folder above
// it that exists (creating nothing). InvalidArgument naming `key`, the
// folder and the system's reason.
absl::Status CheckWritableDir(const std::string& key, const std::string& dir, int rank);

// checkpoint.dir (when set) and the folder of output.metrics (when set).
absl::Status CheckOutputsWritable(const JobConfig& config, int rank);

// One line for an allocation that did not fit (std::bad_alloc), naming
// what to lower.
std::string OutOfMemoryAdvice(const JobConfig& config);

}  // namespace baton
