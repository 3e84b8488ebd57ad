// Offline distillation's teacher rows on their way to the GPU. The driver
// reads each step's top-k rows (checkpoints/teacher_logits.h) into host
// memory; the GPU loss (runtime/distill_offline.h) wants them on the device.
// As for the step's tokens (runtime/step_batches.h), a plain host copy
// would wait for the whole compute stream, so the rows go through pinned
// memory in two alternating sets: Upload checks the ids on the host (the
// kernels cannot), copies the rows into one set and queues their
// cudaMemcpyAsync on the compute stream into one device set, which stream
// order keeps behind the previous step's reads; an event per host set keeps
// the host from overwriting a set whose copy has not run. Values and
// rest_lse are made f32, whatever the logits' dtype.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/distill_offline.h"

namespace baton {

class TeacherTopKUpload {
 public:
  // FailedPrecondition in a build without CUDA.
  static absl::StatusOr<std::unique_ptr<TeacherTopKUpload>> Create();
  ~TeacherTopKUpload();
  TeacherTopKUpload(const TeacherTopKUpload&) = delete;
  TeacherTopKUpload& operator=(const TeacherTopKUpload&) = delete;

  // host: one step's rows [mb] (CPU, f32/f64 values and rest_lse, i32 ids,
  // one temperature), each checked against `vocab` (InvalidArgument naming
  // the micro-batch and row). Returns the same rows on the device, views of
  // this object's device set: valid for kernels queued on the compute stream
  // before the next Upload.
  absl::StatusOr<std::vector<TeacherTopK>> Upload(const std::vector<TeacherTopK>& host, int64_t vocab);

 private:
  TeacherTopKUpload() = default;
  absl::Status Reserve(size_t bytes_per_set);  // waits for both sets' copies before it reallocates

  int current_ = 0;
  void* pinned_ = nullptr;  // one cudaHostAlloc block, two sets of bytes_per_set_
  size_t bytes_per_set_ = 0;
  void* copied_[2] = {nullptr, nullptr};  // cudaEvent_t after each host set's copies
  bool recorded_[2] = {false, false};
  std::vector<TeacherTopK> device_;  // [mb] the device set
};

}  // namespace baton
