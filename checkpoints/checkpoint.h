// Training checkpoints as HDF5 files: every tensor at its full logical
// shape under its model name, plus the step and string attributes (config,
// sampler state, RNG, git revision). Layout of a file (`h5dump -H` shows it):
//
//   /                  attrs: step (int64), format = "baton-checkpoint-1",
//                             one variable-length string per CheckpointData::attrs entry
//   /params/layers.3.attn.wq       dataset, f32 [out, in]   (dots stay in the name)
//   /adam/m/layers.3.attn.wq       ...
//
// A tensor name "a/b/c.d" is the dataset "c.d" in group /a/b. Strings are
// variable-length attributes: their bytes live in the global heap, so the
// 64 KB object-header limit does not cap them (a whole config fits).
// Writes are atomic: the file is built as PATH.tmp, flushed, fsync'ed and
// renamed; a failed write leaves nothing under PATH. dist_checkpoint.h
// writes and reads the same layout from many ranks (each its own slices,
// DESIGN.md invariant 4).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

struct CheckpointTensor {
  std::string name;  // "params/layers.3.attn.wq", "adam/m/...", "adam/v/..."
  Tensor tensor;     // full logical shape; f32, f64 or i32 on the CPU
};

struct CheckpointData {
  int64_t step = 0;
  std::vector<CheckpointTensor> tensors;       // ReadCheckpoint returns them sorted by name
  std::map<std::string, std::string> attrs;    // "config" (TOML), "sampler" (JSON), "rng", "git_revision", ...
  std::string source;                          // the file it was read from; "" if built in memory

  // The tensor called `name`, or null.
  const CheckpointTensor* Find(const std::string& name) const;
};

// Attribute names the format itself uses; CheckpointData::attrs may not use them.
inline constexpr char kCheckpointStepAttr[] = "step";
inline constexpr char kCheckpointFormatAttr[] = "format";
inline constexpr char kCheckpointFormat[] = "baton-checkpoint-1";

// Writes `data` to `path` atomically (see above). Errors name the file and tensor.
absl::Status WriteCheckpoint(const std::string& path, const CheckpointData& data);

// Reads every tensor and attribute. A missing file: NotFound "checkpoint
// PATH: No such file or directory"; a file that is not a baton checkpoint:
// InvalidArgument naming the file.
absl::StatusOr<CheckpointData> ReadCheckpoint(const std::string& path);

// Copies tensor `name` of `data` into `dst` after checking its shape and
// dtype: "reading params/layers.3.attn.wq from ckpt/step_00000100.h5:
// shape [64, 128] != expected [64, 64]". A missing tensor is NotFound.
absl::Status CopyInto(const CheckpointData& data, const std::string& name, Tensor& dst);

}  // namespace baton
