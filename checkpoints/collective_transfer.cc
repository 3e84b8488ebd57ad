// Collective hyperslab transfers for the distributed checkpoint (see collective_transfer.h).
#include "checkpoints/collective_transfer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoints/shard_tiling.h"

namespace baton {

absl::Status NamingFile(const absl::Status& s, const std::string& path) {
  if (s.ok() || absl::StrContains(s.message(), path)) return s;
  return absl::Status(s.code(), absl::StrCat("checkpoint ", path, ": ", s.message()));
}

std::map<std::string, std::vector<const TensorShard*>> ShardsByName(const std::vector<TensorShard>& shards,
                                                                    bool writers_only) {
  std::map<std::string, std::vector<const TensorShard*>> out;
  for (const TensorShard& s : shards) {
    if (s.write || !writers_only) out[s.name].push_back(&s);
  }
  return out;
}

#ifdef H5_HAVE_PARALLEL
namespace {

// A dataspace with nothing selected: a rank's part in a collective transfer
// of a tensor it holds no (more) slices of.
absl::StatusOr<H5Id> NoneSelected(hid_t dset, const std::string& file) {
  H5Id space(H5Dget_space(dset), H5Sclose);
  BATON_CHECK_H5(space.get(), file);
  BATON_CHECK_H5(H5Sselect_none(space.get()), file);
  return space;
}

}  // namespace

absl::StatusOr<H5Id> CollectiveTransferList(const std::string& file) {
  H5Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  BATON_CHECK_H5(dxpl.get(), file);
  BATON_CHECK_H5(H5Pset_dxpl_mpio(dxpl.get(), H5FD_MPIO_COLLECTIVE), file);
  return dxpl;
}

absl::Status TransferCollective(hid_t dset, hid_t dxpl, DType dtype, const TensorShard* shard, bool write,
                                const std::string& file) {
  H5Id fspace, mspace;
  void* buf = nullptr;
  static char nothing;  // HDF5 wants a non-null buffer even for an empty selection
  absl::Status selected;  // a failed selection still takes part (with nothing), then reports
  if (shard != nullptr && shard->local.numel() > 0) {
    Shape start, count;
    SliceBlock(shard->full_shape, shard->local.shape(), shard->shard_dim, shard->offset, &start, &count);
    absl::StatusOr<H5Id> block = SelectBlock(dset, start, count, file);
    mspace = Dataspace(shard->local.shape());
    selected = !block.ok() ? block.status() : FromHdf5(mspace.get(), "H5Screate_simple", file, __FILE__, __LINE__);
    if (selected.ok()) {
      fspace = *std::move(block);
      buf = const_cast<void*>(shard->local.raw());
    }
  }
  if (buf == nullptr) {
    BATON_ASSIGN_OR_RETURN(fspace, NoneSelected(dset, file));
    BATON_ASSIGN_OR_RETURN(mspace, NoneSelected(dset, file));
    buf = &nothing;
  }
  if (write) {
    BATON_CHECK_H5(H5Dwrite(dset, MemoryType(dtype), mspace.get(), fspace.get(), dxpl, buf), file);
  } else {
    BATON_CHECK_H5(H5Dread(dset, MemoryType(dtype), mspace.get(), fspace.get(), dxpl, buf), file);
  }
  return selected;
}
#endif  // H5_HAVE_PARALLEL

}  // namespace baton
