// Pieces the distributed checkpoint writer and reader share
// (dist_checkpoint_write.cc, dist_checkpoint_read.cc): one collective
// hyperslab transfer of a rank's shard through parallel HDF5 (a rank with
// nothing to move still takes part, with an empty selection), this rank's
// shards grouped by tensor name, and the "checkpoint PATH: " context.
#pragma once

#include <hdf5.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoints/dist_checkpoint.h"
#include "checkpoints/h5.h"

namespace baton {

// "checkpoint PATH: ..." unless the message names the file already.
absl::Status NamingFile(const absl::Status& s, const std::string& path);

// This rank's shards of each tensor, in list order.
std::map<std::string, std::vector<const TensorShard*>> ShardsByName(const std::vector<TensorShard>& shards,
                                                                    bool writers_only);

#ifdef H5_HAVE_PARALLEL
// A dataset transfer property list with collective MPI-IO.
absl::StatusOr<H5Id> CollectiveTransferList(const std::string& file);

// One collective transfer (write or read) of `shard`'s block, or of nothing
// when `shard` is null or empty. Every rank must call it for the dataset.
absl::Status TransferCollective(hid_t dset, hid_t dxpl, DType dtype, const TensorShard* shard, bool write,
                                const std::string& file);
#endif

}  // namespace baton
