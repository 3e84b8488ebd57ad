// Room on the disk for a checkpoint save, so that a full disk is one clear
// error and never a failure inside HDF5 or MPI-IO (issue 15: a hang in
// H5Fclose on two ranks, a segfault at exit on one, and MPI-IO dropping a
// failed collective write without an error). Both writers (checkpoint.cc,
// dist_checkpoint_write.cc) follow the same steps, on one process:
//   PrepareRoom    before the file exists: free space checked, and a
//                  "ballast" file as large as the metadata made;
//   ReserveFile    right after the temporary is created: all its blocks
//                  reserved (fallocate), so no later write meets ENOSPC;
//                  the parallel writer uses ReserveBeforeCreate instead:
//                  the temporary appears (by rename) already reserved, and
//                  MPI-IO's open keeps the reservation (no truncation of an
//                  empty file), so no collective write can meet ENOSPC,
//                  not even while another writer fills the disk;
//   FreeRoomForClose on a failed save, before closing: ballast dropped and,
//                  where nothing was reserved, the temporary emptied, so
//                  HDF5's closing flush has room;
//   FinishRoom     at the end: ballast removed, the unused reservation
//                  past the file's end given back.
// A file system that cannot reserve (EOPNOTSUPP) is left to the writers'
// own error checks.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"

namespace baton {

struct SaveRoom {
  int64_t metadata = 0;  // bytes kept by the ballast
  int64_t total = 0;     // bytes reserved for the file: data and metadata
};

// Generous sizes for a file of `tensors` datasets holding `data_bytes` and
// `attrs` as string attributes.
SaveRoom CheckpointRoom(int64_t data_bytes, int64_t tensors, const std::map<std::string, std::string>& attrs);

// ResourceExhausted "checkpoint PATH: needs about X MB but its file system
// has Y MB free (errno 28: No space left on device)", or the ballast's error.
absl::Status PrepareRoom(const std::string& path, const SaveRoom& room);
absl::Status ReserveFile(const std::string& path, const std::string& tmp, const SaveRoom& room);
absl::Status ReserveBeforeCreate(const std::string& path, const std::string& tmp, const SaveRoom& room,
                                 bool* reserved);
void FreeRoomForClose(const std::string& path, const std::string& tmp, bool reserved);
void FinishRoom(const std::string& path, const std::string& tmp, const SaveRoom& room, bool saved);

// The ballast's name: PATH.tmp.room (checkpoint_dir.h removes stale ones).
std::string BallastPath(const std::string& path);

}  // namespace baton
