// Free and total memory of the current GPU (cudaMemGetInfo), for sizing
// what is allocated once at start-up from what is left (the KV cache of
// `baton infer`: infer.kv_cache_fraction of the free memory).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace baton::cuda {

struct GpuMemory {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

absl::StatusOr<GpuMemory> CurrentGpuMemory();

}  // namespace baton::cuda
