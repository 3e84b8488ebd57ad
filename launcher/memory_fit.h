// Refusing a training job that cannot fit, before its first step. A job
// too big for memory used to die in the middle of the first step
// (`std::bad_alloc`, exit 134, or the kernel's OOM killer) after the data
// was opened and the model built; the planner's memory model
// (launcher/plan_memory, pinned against real allocations) already knows
// the peak bytes of each rank from the config alone, so the trainer asks
// it before allocating anything and compares with what the machine has
// free: host RAM (MemAvailable, shared by the ranks of a node) on the CPU,
// the GPU's free memory on CUDA. Every rank learns every rank's answer, so
// all of them stop with the same one line naming the rank, the bytes and
// what to lower.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "launcher/config.h"
#include "parallel/communicator.h"
#include "runtime/tensor.h"

namespace baton {

// The peak bytes one rank of this job holds (the busiest pipeline stage).
absl::StatusOr<int64_t> PredictRankBytes(const JobConfig& config, Device device);

// Bytes this rank may use: MemAvailable from /proc/meminfo divided among
// `ranks_on_node` on the CPU; free memory of the current GPU on CUDA.
absl::StatusOr<int64_t> AvailableBytes(Device device, int ranks_on_node);

// One rank's verdict, then everyone's (world may be null: one process).
// ResourceExhausted (exit 2) naming the first rank that does not fit, its
// predicted and available bytes and what to lower.
absl::Status CheckMemoryFits(const JobConfig& config, Device device, int64_t predicted, int64_t available,
                             Communicator* world);

// All of the above for this process: the ranks on its node from the
// launcher's environment (launcher/rank_env). What `baton train` calls
// after choosing the device and before building the model.
absl::Status CheckJobFitsMemory(const JobConfig& config, Device device, Communicator* world);

}  // namespace baton
