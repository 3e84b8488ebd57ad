// Pinned, double-buffered step inputs with stream-ordered uploads (see
// step_batches.h).
#include "runtime/step_batches.h"

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/cuda_allocator.h"

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/stream.h"
#endif

namespace baton {

#ifdef BATON_HAVE_CUDA
namespace {

absl::Status FromCuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("step inputs: ", what, ": ", cudaGetErrorString(e)));
}

cudaEvent_t AsEvent(void* e) { return static_cast<cudaEvent_t>(e); }

}  // namespace
#endif

absl::StatusOr<std::unique_ptr<StepBatches>> StepBatches::Create(Device device, int microbatches, int64_t batch,
                                                                 int64_t seq) {
  std::unique_ptr<StepBatches> s(new StepBatches());
  if (device == Device::kCpu) {
    for (auto* set : {s->host_tokens_, s->host_targets_}) {
      for (int m = 0; m < microbatches; ++m) set[0].push_back(Tensor::Empty({batch, seq}, DType::kI32));
      set[1] = set[0];  // one host set: the step has finished with it before the next fill
    }
    return s;
  }
#ifdef BATON_HAVE_CUDA
  s->device_ = true;
  const size_t one = static_cast<size_t>(batch * seq) * sizeof(int32_t);
  const size_t count = static_cast<size_t>(4 * microbatches);  // {tokens, targets} x 2 sets
  if (count > 0) {
    BATON_RETURN_IF_ERROR(FromCuda(cudaHostAlloc(&s->pinned_, one * count, cudaHostAllocDefault), "cudaHostAlloc"));
  }
  char* p = static_cast<char*>(s->pinned_);
  for (int k = 0; k < 2; ++k) {
    for (int m = 0; m < microbatches; ++m) {
      s->host_tokens_[k].push_back(Tensor::Borrow(p, {batch, seq}, DType::kI32));
      s->host_targets_[k].push_back(Tensor::Borrow(p + one, {batch, seq}, DType::kI32));
      p += 2 * one;
    }
    cudaEvent_t e = nullptr;
    BATON_RETURN_IF_ERROR(FromCuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate"));
    s->copied_[k] = e;
  }
  for (int m = 0; m < microbatches; ++m) {
    s->dev_tokens_.push_back(Tensor::Empty({batch, seq}, DType::kI32, DefaultCudaAllocator()));
    s->dev_targets_.push_back(Tensor::Empty({batch, seq}, DType::kI32, DefaultCudaAllocator()));
  }
  return s;
#else
  return absl::FailedPreconditionError("step inputs on the GPU need a CUDA build");
#endif
}

StepBatches::~StepBatches() {
#ifdef BATON_HAVE_CUDA
  if (!device_) return;
  // The borrowed host tensors must not outlive the block: wait for any queued copy first.
  for (void* e : copied_) {
    if (e != nullptr) {
      cudaEventSynchronize(AsEvent(e));
      cudaEventDestroy(AsEvent(e));
    }
  }
  if (pinned_ != nullptr) cudaFreeHost(pinned_);
#endif
}

absl::Status StepBatches::BeginFill() {
  if (!device_) return absl::OkStatus();
  current_ = 1 - current_;
#ifdef BATON_HAVE_CUDA
  if (recorded_[current_]) {
    BATON_RETURN_IF_ERROR(FromCuda(cudaEventSynchronize(AsEvent(copied_[current_])), "waiting for a copy"));
  }
#endif
  return absl::OkStatus();
}

absl::Status StepBatches::Upload() {
  if (!device_) return absl::OkStatus();
#ifdef BATON_HAVE_CUDA
  cudaStream_t stream = cuda::CurrentStream();
  for (size_t m = 0; m < dev_tokens_.size(); ++m) {
    for (auto [dst, src] : {std::pair{&dev_tokens_[m], &host_tokens_[current_][m]},
                            std::pair{&dev_targets_[m], &host_targets_[current_][m]}}) {
      BATON_RETURN_IF_ERROR(FromCuda(
          cudaMemcpyAsync(dst->raw(), src->raw(), src->nbytes(), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync"));
    }
  }
  BATON_RETURN_IF_ERROR(FromCuda(cudaEventRecord(AsEvent(copied_[current_]), stream), "cudaEventRecord"));
  recorded_[current_] = true;
#endif
  return absl::OkStatus();
}

}  // namespace baton
