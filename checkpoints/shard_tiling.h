// The tiling check of a distributed checkpoint write, as pure logic: given
// what every rank holds of every logical tensor (name, dtype, full shape,
// slice), decide whether the slices marked for writing cover each tensor
// exactly once (one rank whole, or slices along one dim with no gap and no
// overlap), and plan the collective transfers. dist_checkpoint_write.cc
// runs it on every rank over the same allgathered entries, so every rank
// reaches the same verdict before any file exists. No MPI, no HDF5: tested alone
// (tests/checkpoints/shard_tiling_test.cc).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

// What one rank holds of one tensor, as every rank learns it.
struct ShardEntry {
  std::string name;  // "params/layers.3.attn.wq"
  DType dtype = DType::kF32;
  Shape full;   // logical shape in the file
  Shape local;  // the slice's shape
  int dim = -1;         // -1: the whole tensor
  int64_t offset = 0;   // start of the slice along dim
  bool write = true;    // false: a replica another rank writes
  int rank = 0;   // who holds it
  int index = 0;  // its position in that rank's shard list
};

// One tensor of the file: its writers (sorted by offset) and how many
// collective transfers it takes (the most slices one rank writes of it).
struct TensorPlan {
  DType dtype = DType::kF32;
  Shape full;
  std::vector<ShardEntry> writers;
  int rounds = 0;
};
using TensorPlans = std::map<std::string, TensorPlan>;  // sorted: the order of every collective call

// "" if the slice (local at offset along dim) fits inside `full`: same
// rank, equal extents except along dim, inside [0, full[dim]); else why not.
std::string SliceProblem(const Shape& full, const Shape& local, int dim, int64_t offset);

// The plans, or InvalidArgument "checkpoint PATH: tensor NAME: ..." for the
// first tensor (by name) whose writers do not tile it exactly once, whose
// ranks disagree on shape or dtype, or whose name is not a valid path.
absl::StatusOr<TensorPlans> TileShards(const std::vector<ShardEntry>& entries, const std::string& path);

// Start and extent of a slice's block in the full tensor.
void SliceBlock(const Shape& full, const Shape& local, int dim, int64_t offset, Shape* start, Shape* count);

}  // namespace baton
