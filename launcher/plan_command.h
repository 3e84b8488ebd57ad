// `baton plan`: reads a job config, searches the layouts of --gpus devices
// (launcher/plan_search.h) and prints the ranked table, the JSON, or one
// layout's simulated step (--explain); `baton plan --calibrate --out
// FILE` measures this machine's profile instead. One process, no MPI.
#pragma once

#include <string>
#include <vector>

namespace baton {

// args: everything after "plan". Returns the exit status (0 done, 2 bad input).
int RunPlanCommand(const std::vector<std::string>& args);

}  // namespace baton
