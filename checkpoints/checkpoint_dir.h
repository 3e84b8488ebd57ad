// A directory of checkpoints: step_00000100.h5 files, a `latest` file that
// names the newest committed one, and pruning of old ones. The `latest`
// file is the commit point of a save: it is replaced atomically after the
// checkpoint itself was renamed into place, so a reader never sees a name
// of a half-written file. Used by the train driver for checkpoint.dir,
// checkpoint.resume = "auto" and checkpoint.keep.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baton {

// Opens dir for a run that saves checkpoints, at start-up (one process,
// before any save): creates it if needed, fails with InvalidArgument naming
// it if it cannot be written (before the training work, not at the first
// save), and removes the temporaries a crashed save left behind
// (step_*.h5.tmp, step_*.h5.tmp.room, latest.tmp), which nothing else
// would ever remove unless the same step were saved again.
absl::Status OpenCheckpointDir(const std::string& dir);

// dir/step_00000100.h5 (8 digits, more if the step needs them).
std::string CheckpointPath(const std::string& dir, int64_t step);

// The step of a file named step_NNNNNNNN.h5 (any directory), or nullopt.
std::optional<int64_t> CheckpointStep(const std::string& path);

// Atomically makes dir/latest name `path` (its file name; it must be in dir).
absl::Status CommitLatest(const std::string& dir, const std::string& path);

// The checkpoint to resume from: the file dir/latest names if it exists,
// else the highest-step step_*.h5 in dir (a save that crashed between its
// rename and CommitLatest is still complete), else nullopt (also when dir
// does not exist). A `latest` naming something that is not step_*.h5 is an error.
absl::StatusOr<std::optional<std::string>> FindLatest(const std::string& dir);

// Removes step_*.h5 files of dir beyond the newest `keep` (0 = keep all).
// Never removes the file `latest` names.
absl::Status Prune(const std::string& dir, int keep);

}  // namespace baton
