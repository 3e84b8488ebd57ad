// The CUDA caching allocator: device memory for Tensors without a
// cudaMalloc per step. Freed blocks go to a free list keyed by rounded size
// and are handed out again; cudaMalloc runs only when no cached block fits
// (and, on out-of-memory, once more after the cache is returned to the
// driver). Reuse is stream-ordered: all work runs on one stream
// (cuda::CurrentStream), so a block freed by the host is reused only by work
// queued after the work that used it. Using one tensor from two streams
// needs an event before its free (not done yet: single stream for now).
// Compiled always; without BATON_HAVE_CUDA Create() returns an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

struct CudaMemoryStats {
  size_t in_use = 0;         // bytes in live blocks (rounded sizes)
  size_t peak_in_use = 0;    // max of in_use since creation or ResetPeak()
  size_t reserved = 0;       // bytes held from the driver (live + cached)
  size_t peak_reserved = 0;
  int64_t device_mallocs = 0;  // cudaMalloc calls so far: flat after warm-up
};

class CudaCachingAllocator final : public Allocator {
 public:
  // An allocator for `device` (the ordinal); fails without CUDA or a GPU.
  static absl::StatusOr<std::unique_ptr<CudaCachingAllocator>> Create(int device);
  ~CudaCachingAllocator() override;

  // Throws std::bad_alloc when even an empty cache cannot satisfy it (as the
  // CPU allocator does); TryAllocate says why instead.
  void* Allocate(size_t bytes) override;
  absl::StatusOr<void*> TryAllocate(size_t bytes);
  void Free(void* ptr, size_t bytes) override;
  Device device() const override { return Device::kCuda; }

  // Returns every cached (free) block to the driver; syncs the device first.
  absl::Status EmptyCache();
  CudaMemoryStats stats() const;
  void ResetPeak();
  int device_ordinal() const { return device_; }

  // Sizes under 1 MiB round up to 512 B, larger ones to 2 MiB.
  static size_t RoundSize(size_t bytes);

 private:
  explicit CudaCachingAllocator(int device) : device_(device) {}
  absl::Status EmptyCacheLocked();

  int device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;         // size -> block
  std::unordered_map<void*, size_t> live_;    // block -> size
  CudaMemoryStats stats_;
};

// The process-wide allocator for the current device, created on first use;
// aborts with a message when there is no CUDA device (a caller bug: check
// CudaDeviceCount() first).
CudaCachingAllocator* DefaultCudaAllocator();

}  // namespace baton
