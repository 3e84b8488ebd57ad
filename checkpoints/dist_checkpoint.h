// Distributed checkpoints: every rank writes and reads only its own slices
// of the logical tensors, so no rank ever gathers the model (DESIGN.md
// invariant 4). The file is exactly checkpoint.h's format (every tensor
// once at its full logical shape under its name, the step, the format tag
// and the string attributes), so ReadCheckpoint reads a file written here
// and ReadShardedCheckpoint reads one written by WriteCheckpoint.
//
// Writing is collective: the ranks allgather what they hold (name, dtype,
// full shape, slice), every rank checks that the written slices tile each
// tensor exactly once and reaches the same verdict before any file exists;
// then all create PATH.tmp and the union of the datasets together through
// parallel HDF5 (MPI-IO), write their hyperslabs with collective transfers
// and close together; rank 0 fsyncs and renames PATH.tmp to PATH. An error
// on any rank is an error on every rank, and nothing is left under PATH or
// PATH.tmp. The file's room on the disk is checked and reserved before any
// byte is written (disk_room.h): a full disk is ResourceExhausted naming
// the file and errno 28 on every rank, the previous checkpoint untouched.
// Reading opens the file collectively too (metadata read once and
// broadcast) and each rank reads exactly its own hyperslabs. A truncated
// file, or one lacking a tensor of the model (another model shape), is one
// line naming the file and what differs.
//
// Fallback: with a serial HDF5 build (no H5_HAVE_PARALLEL) writing sends
// the slices to rank 0, which assembles whole tensors and writes them with
// WriteCheckpoint (correct, but rank 0 then holds the model), and each rank
// reads its hyperslabs through its own read-only open. DistributedCheckpointIo()
// says which path this build takes.
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
  bool write = true;   // false: a replica another rank writes (checked for agreement, not written)
};

// "parallel HDF5 (MPI-IO)" or "serial HDF5: slices gathered to rank 0".
const char* DistributedCheckpointIo();

// Collective over `comm`: every rank calls it, each with its own shards.
// The shards with write = true must cover every tensor any rank names
// exactly once (one rank whole, or slices along one dim without gap or
// overlap); otherwise InvalidArgument naming the tensor, on every rank,
// and no file is made. `step` and `attrs` are taken from rank 0.
absl::Status WriteShardedCheckpoint(MPI_Comm comm, const std::string& path, int64_t step,
                                    const std::vector<TensorShard>& shards,
                                    const std::map<std::string, std::string>& attrs);

// Collective over `comm`: fills each shard's `local` (already of the slice's
// shape and the file's dtype) from the file, any slicing of any file in the
// format. Errors, the same on every rank: a missing file or tensor is
// NotFound naming it; a shape or dtype that differs from the file's, or a
// slice that does not fit, InvalidArgument naming file, tensor and shapes.
// `write` is ignored. Every rank gets the step and all string attributes.
absl::Status ReadShardedCheckpoint(MPI_Comm comm, const std::string& path, std::vector<TensorShard>& shards,
                                   int64_t* step, std::map<std::string, std::string>* attrs);

// The serial-HDF5 paths, callable in any build so that tests cover them:
// slices sent to rank 0 which writes with WriteCheckpoint (rank 0 holds the
// whole model for a moment), and per-rank independent read-only opens.
// Same contracts and errors as the two functions above.
absl::Status WriteShardedCheckpointViaRank0(MPI_Comm comm, const std::string& path, int64_t step,
                                            const std::vector<TensorShard>& shards,
                                            const std::map<std::string, std::string>& attrs);
absl::Status ReadShardedCheckpointIndependently(MPI_Comm comm, const std::string& path,
                                                std::vector<TensorShard>& shards, int64_t* step,
                                                std::map<std::string, std::string>* attrs);

// The tensor (dataset) names in the file, sorted, on every rank (rank 0
// reads them and broadcasts): for "weights only?" checks before a read.
absl::StatusOr<std::vector<std::string>> ListCheckpointTensors(MPI_Comm comm, const std::string& path);

}  // namespace baton
