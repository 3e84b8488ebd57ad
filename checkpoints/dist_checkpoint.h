// Distributed checkpoints: every rank writes and reads only its own slices
// of the logical tensors, so no rank ever gathers the model (DESIGN.md
// invariant 4). The file is exactly checkpoint.h's format — every tensor
// once at its full logical shape under its name, the step and string
// attributes — so ReadCheckpoint reads a file written here and these
// readers read one written by WriteCheckpoint.
//
// Writing is collective: the ranks exchange what they hold (names, shapes,
// slices), check that the written slices cover every tensor exactly once
// (all ranks reach the same verdict, before any file exists), create the
// file and its datasets together through parallel HDF5 (MPI-IO), write
// their hyperslabs independently, close together; rank 0 fsyncs and
// renames PATH.tmp to PATH after a barrier. An error on any rank is an
// error on every rank, and nothing is left under PATH or PATH.tmp. With a
// serial HDF5 build (no H5_HAVE_PARALLEL) the slices travel to rank 0,
// which writes the file alone: correct, slower, and it says so in
// DistributedCheckpointIo().
// Reading needs no coordination beyond agreeing on errors: each rank opens
// the file read-only and reads its hyperslabs.
#pragma once

#include <mpi.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

// One rank's piece of one logical tensor.
struct TensorShard {
  std::string name;    // "params/layers.3.attn.wq", "adam/m/...", "adam/v/..."
  Shape full_shape;    // logical shape in the file
  int shard_dim = -1;  // -1: this rank holds the whole tensor
  int64_t offset = 0;  // start of this rank's slice along shard_dim
  Tensor local;        // this rank's slice (contiguous, CPU, f32/f64/i32); read: the destination
};

// "parallel HDF5 (MPI-IO)" or "serial HDF5: slices gathered to rank 0".
const char* DistributedCheckpointIo();

// Collective over `comm`. Ranks pass the shards they write (each slice of
// each tensor by exactly one rank); `attrs` and `step` are rank 0's.
absl::Status WriteShardedCheckpoint(MPI_Comm comm, const std::string& path, int64_t step,
                                    const std::vector<TensorShard>& shards,
                                    const std::map<std::string, std::string>& attrs);

// Collective over `comm` (only to agree on errors): fills each shard's
// `local` from the file; a missing tensor is NotFound naming it and the
// file, a shape or dtype mismatch InvalidArgument. Every rank gets the step
// and all string attributes.
absl::Status ReadShardedCheckpoint(MPI_Comm comm, const std::string& path, std::vector<TensorShard>& shards,
                                   int64_t* step, std::map<std::string, std::string>* attrs);

}  // namespace baton
