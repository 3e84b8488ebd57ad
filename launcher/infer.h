// `baton infer`: a prompt file through a checkpoint's model, completions
// appended to an output file as they finish (see docs/inference.md).
// Parallel: the world is a dp x pp x tp mesh (parallel.tp, parallel.pp;
// dp = ranks / (tp·pp)). Replica r takes the lines with (line - 1) % dp == r;
// its tp and pp ranks split the model (CPU so far) and its tp-0, pp-0 rank
// appends to the one output file. The
// driver owns the files, the config, progress and metrics; the generation
// itself is runtime/batch_generator.h.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "launcher/infer_config.h"
#include "launcher/infer_metrics.h"

namespace baton {

struct InferPaths {
  std::string checkpoint, prompts, out;
};

// One rank's run. world_rank/world_size describe all ranks
// (1 process: 0 and 1); with world_size > 1, MPI must be initialised. The
// summary (on rank 0: over all ranks) is filled on success.
absl::Status RunInfer(const InferPaths& paths, const InferConfig& config, int world_rank, int world_size,
                      InferSummary* summary);

// The CLI entry: flags, MPI, config, RunInfer, the summary; returns the exit status.
int RunInferCommand(const std::vector<std::string>& args);

}  // namespace baton
