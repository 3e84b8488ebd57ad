// A whole model built from any baton checkpoint (a training checkpoint or
// one made by `baton import --hf`), for the commands that only run a
// forward: `baton eval`, the teacher of `baton distill`. The model is what
// the checkpoint's own "config" attribute describes; its weights are the
// checkpoint's params, on the CPU in f32 or on the GPU in bf16 (f32 master
// copies). Errors name the file: a missing config, a tensor that is not a
// parameter of that model, a shape that differs.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "launcher/config.h"
#include "runtime/model.h"

namespace baton {

struct CheckpointModel {
  JobConfig job;    // the checkpoint's job config ([model] describes `model`)
  int64_t step = 0;  // the checkpoint's step (0 for an import)
  Model model;
};

// "auto" = CUDA when a GPU is visible, else CPU; "cpu"; "cuda" (an error without a GPU).
absl::StatusOr<Device> EvalDevice(const std::string& device);

absl::StatusOr<CheckpointModel> LoadCheckpointModel(const std::string& path, Device device);

// Model::Logits output (any dtype, any device) as a host f32 tensor.
Tensor LogitsOnHostF32(const Tensor& logits);

}  // namespace baton
