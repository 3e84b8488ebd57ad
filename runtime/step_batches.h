// The training step's input micro-batches, staged for the device without
// stalling it. Tensor::CopyFrom from host memory waits for the whole
// compute stream (it must: the host buffer may be reused at once), and the
// model copied the step's tokens at the start of the forward and its
// targets in the middle of it, so each step drained the GPU's queue twice
// while the host still had the backward to queue. Here the host side is
// pinned memory in two alternating sets: the trainer fills one (the sampler
// reads the mmap into it) while the other's copy may still be queued, and
// Upload queues cudaMemcpyAsync on the compute stream into one device set.
// Stream order puts each copy after the previous step's reads of the device
// set; an event per host set keeps the host from overwriting a set whose
// copy has not run. The bytes the model sees are the same, so the results
// are too. On the CPU the host tensors are the step's tensors and Upload
// does nothing.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

class StepBatches {
 public:
  // `microbatches` pairs of (batch, seq) i32 tensors. Device::kCuda needs
  // a CUDA build (FailedPrecondition otherwise).
  static absl::StatusOr<std::unique_ptr<StepBatches>> Create(Device device, int microbatches, int64_t batch,
                                                             int64_t seq);
  ~StepBatches();
  StepBatches(const StepBatches&) = delete;
  StepBatches& operator=(const StepBatches&) = delete;

  // Switches to the other host set, waiting (in steady state: not at all)
  // until its last copy has run; then host_tokens/host_targets are free to
  // fill for the next step.
  absl::Status BeginFill();
  std::vector<Tensor>& host_tokens() { return host_tokens_[current_]; }
  std::vector<Tensor>& host_targets() { return host_targets_[current_]; }
  // Queues the filled set's copies on the compute stream, without waiting.
  absl::Status Upload();
  // What the step reads: the device set (CUDA) or the filled host set (CPU).
  const std::vector<Tensor>& tokens() const { return device_ ? dev_tokens_ : host_tokens_[current_]; }
  const std::vector<Tensor>& targets() const { return device_ ? dev_targets_ : host_targets_[current_]; }

 private:
  StepBatches() = default;

  bool device_ = false;
  int current_ = 0;
  std::vector<Tensor> host_tokens_[2], host_targets_[2];  // pinned on CUDA
  std::vector<Tensor> dev_tokens_, dev_targets_;
  void* pinned_ = nullptr;          // one cudaHostAlloc block behind both host sets
  void* copied_[2] = {nullptr, nullptr};  // cudaEvent_t after each host set's last copy
  bool recorded_[2] = {false, false};
};

}  // namespace baton
