// The CUDA caching allocator (see cuda_allocator.h).
#include "runtime/cuda_allocator.h"

#include <algorithm>
#include <new>

#include "absl/strings/str_cat.h"

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"
#endif

namespace baton {

size_t CudaCachingAllocator::RoundSize(size_t bytes) {
  constexpr size_t kSmall = size_t{1} << 20, kSmallStep = 512, kLargeStep = size_t{2} << 20;
  if (bytes == 0) bytes = 1;
  const size_t step = bytes < kSmall ? kSmallStep : kLargeStep;
  return (bytes + step - 1) / step * step;
}

#ifdef BATON_HAVE_CUDA

absl::StatusOr<std::unique_ptr<CudaCachingAllocator>> CudaCachingAllocator::Create(int device) {
  int count = 0;
  BATON_CHECK_CUDA(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " requested, ", count, " visible"));
  // Kernels take their scratch (RMSNorm dw partials, attention workspaces of
  // hundreds of MB) stream-ordered from the device's default pool; by default
  // the pool gives freed memory back to the driver at every synchronisation,
  // i.e. once per step. Keep it cached instead, as this allocator does.
  cudaMemPool_t pool = nullptr;
  BATON_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep = UINT64_MAX;
  BATON_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  return std::unique_ptr<CudaCachingAllocator>(new CudaCachingAllocator(device));
}

CudaCachingAllocator::~CudaCachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  (void)EmptyCacheLocked();  // live blocks are leaked on purpose: tensors may outlive us
}

absl::StatusOr<void*> CudaCachingAllocator::TryAllocate(size_t bytes) {
  const size_t size = RoundSize(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* ptr = nullptr;
  // Best fit among cached blocks no larger than twice the request.
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= 2 * size) {
    ptr = it->second;
    const size_t got = it->first;
    free_.erase(it);
    live_[ptr] = got;
    stats_.in_use += got;
  } else {
    int prev = 0;
    BATON_CHECK_CUDA(cudaGetDevice(&prev));
    BATON_CHECK_CUDA(cudaSetDevice(device_));
    cudaError_t e = cudaMalloc(&ptr, size);
    if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      cudaGetLastError();
      BATON_RETURN_IF_ERROR(EmptyCacheLocked());
      e = cudaMalloc(&ptr, size);
    }
    cudaSetDevice(prev);
    BATON_RETURN_IF_ERROR(FromCuda(e, "cudaMalloc(&ptr, size)", __FILE__, __LINE__));
    ++stats_.device_mallocs;
    live_[ptr] = size;
    stats_.in_use += size;
    stats_.reserved += size;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
  }
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  return ptr;
}

void* CudaCachingAllocator::Allocate(size_t bytes) {
  absl::StatusOr<void*> p = TryAllocate(bytes);
  if (!p.ok()) {
    if (p.status().code() == absl::StatusCode::kResourceExhausted) throw std::bad_alloc();
    internal::CheckFailed("TryAllocate", __FILE__, __LINE__, p.status().ToString().c_str());
  }
  return *p;
}

void CudaCachingAllocator::Free(void* ptr, size_t) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  BATON_CHECK_MSG(it != live_.end(), "CudaCachingAllocator::Free of a pointer it does not own");
  stats_.in_use -= it->second;
  free_.emplace(it->second, ptr);
  live_.erase(it);
}

absl::Status CudaCachingAllocator::EmptyCache() {
  std::lock_guard<std::mutex> lock(mu_);
  return EmptyCacheLocked();
}

absl::Status CudaCachingAllocator::EmptyCacheLocked() {
  if (free_.empty()) return absl::OkStatus();
  BATON_CHECK_CUDA(cudaDeviceSynchronize());  // queued work may still use cached blocks
  for (auto& [size, ptr] : free_) {
    BATON_CHECK_CUDA(cudaFree(ptr));
    stats_.reserved -= size;
  }
  free_.clear();
  return absl::OkStatus();
}

CudaMemoryStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CudaCachingAllocator::ResetPeak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_in_use = stats_.in_use;
  stats_.peak_reserved = stats_.reserved;
}

CudaCachingAllocator* DefaultCudaAllocator() {
  static CudaCachingAllocator* alloc = [] {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) device = 0;
    absl::StatusOr<std::unique_ptr<CudaCachingAllocator>> a = CudaCachingAllocator::Create(device);
    BATON_CHECK_MSG(a.ok(), a.status().ToString().c_str());
    return a->release();  // process lifetime: tensors in statics may free late
  }();
  return alloc;
}

#else  // !BATON_HAVE_CUDA

absl::StatusOr<std::unique_ptr<CudaCachingAllocator>> CudaCachingAllocator::Create(int) {
  return absl::FailedPreconditionError("baton was built without CUDA (BATON_CUDA=OFF or no nvcc)");
}
CudaCachingAllocator::~CudaCachingAllocator() = default;
absl::StatusOr<void*> CudaCachingAllocator::TryAllocate(size_t) {
  return absl::FailedPreconditionError("built without CUDA");
}
void* CudaCachingAllocator::Allocate(size_t) {
  internal::CheckFailed("BATON_HAVE_CUDA", __FILE__, __LINE__, "built without CUDA");
}
void CudaCachingAllocator::Free(void*, size_t) {}
absl::Status CudaCachingAllocator::EmptyCache() { return absl::OkStatus(); }
absl::Status CudaCachingAllocator::EmptyCacheLocked() { return absl::OkStatus(); }
CudaMemoryStats CudaCachingAllocator::stats() const { return stats_; }
void CudaCachingAllocator::ResetPeak() {}
CudaCachingAllocator* DefaultCudaAllocator() {
  internal::CheckFailed("BATON_HAVE_CUDA", __FILE__, __LINE__, "built without CUDA");
}

#endif

}  // namespace baton
