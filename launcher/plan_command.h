// `baton plan`: reads a job config, searches the layouts of --gpus devices
// (launcher/plan_search.h) and prints the ranked table, the JSON, or one
// layout's simulated step (--explain); `baton plan --calibrate --out
// FILE` measures this machine's profile instead. One process, no MPI.
#pragma once

#include <string>
#include <vector>

#include "launcher/config.h"
#include "launcher/plan_memory.h"

namespace baton {

// The job config's own [parallel] layout, as the planner prices it: its
// parallel.layers_per_stage goes into the layout as the engine gets it
// (EngineConfigOf), so SplitParts cuts the model as `baton train` would.
PlanLayout PlanLayoutOf(const JobConfig& config);

// args: everything after "plan". Returns the exit status (0 done, 2 bad input).
int RunPlanCommand(const std::vector<std::string>& args);

}  // namespace baton
