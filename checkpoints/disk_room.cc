// Disk space for checkpoint saves (see disk_room.h).
#include "checkpoints/disk_room.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoints/h5.h"

namespace baton {
namespace {

absl::Status NoRoom(const std::string& path, int err, const std::string& what) {
  return absl::ResourceExhaustedError(
      absl::StrCat("checkpoint ", path, ": ", what, " (errno ", err, ": ", std::strerror(err), ")"));
}

// Reserves `bytes` of `file` from offset 0 without changing its size;
// `*reserved` says whether the blocks are now held.
absl::Status ReserveBytes(const std::string& file, int64_t bytes, const std::string& path, const std::string& what,
                          bool* reserved = nullptr) {
  if (reserved != nullptr) *reserved = false;
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd < 0) return absl::OkStatus();  // no such directory, no permission: the create says so, naming the file
  const int err = bytes > 0 && ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, bytes) != 0 ? errno : 0;
  ::close(fd);
  if (reserved != nullptr) *reserved = err == 0;
  if (err == 0 || err == EOPNOTSUPP || err == ENOSYS) return absl::OkStatus();
  return NoRoom(path, err, absl::StrFormat("no room for %s of %.1f MB", what, bytes / 1e6));
}

}  // namespace

std::string BallastPath(const std::string& path) { return path + ".tmp.room"; }

SaveRoom CheckpointRoom(int64_t data_bytes, int64_t tensors, const std::map<std::string, std::string>& attrs) {
  SaveRoom room;
  room.metadata = (int64_t{64} << 10) + tensors * 4096;  // the root, and an object header per dataset
  for (const auto& [k, v] : attrs) room.metadata += static_cast<int64_t>(k.size() + v.size()) + 256;
  room.total = room.metadata + data_bytes;
  return room;
}

absl::Status PrepareRoom(const std::string& path, const SaveRoom& room) {
  struct statvfs fs;
  if (::statvfs(DirOf(path).c_str(), &fs) == 0) {  // else the create will say why
    const int64_t free_bytes = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
    if (free_bytes < room.total) {
      return NoRoom(path, ENOSPC, absl::StrFormat("needs about %.1f MB but its file system has %.1f MB free",
                                                  room.total / 1e6, free_bytes / 1e6));
    }
  }
  absl::Status st = ReserveBytes(BallastPath(path), room.metadata, path, "the metadata");
  if (!st.ok()) std::remove(BallastPath(path).c_str());
  return st;
}

absl::Status ReserveFile(const std::string& path, const std::string& tmp, const SaveRoom& room) {
  return ReserveBytes(tmp, room.total, path, "the checkpoint");
}

absl::Status ReserveBeforeCreate(const std::string& path, const std::string& tmp, const SaveRoom& room,
                                 bool* reserved) {
  // Reserved under another name, then renamed: PATH.tmp never exists
  // without its blocks, whoever else is writing to the disk meanwhile.
  const std::string staging = tmp + ".new";
  std::remove(staging.c_str());
  absl::Status st = ReserveBytes(staging, room.total, path, "the checkpoint", reserved);
  if (st.ok() && ::access(staging.c_str(), F_OK) == 0 && std::rename(staging.c_str(), tmp.c_str()) != 0) *reserved = false;
  std::remove(staging.c_str());
  return st;
}

void FreeRoomForClose(const std::string& path, const std::string& tmp, bool reserved) {
  std::remove(BallastPath(path).c_str());
  if (!reserved) (void)::truncate(tmp.c_str(), 0);
}

void FinishRoom(const std::string& path, const std::string& tmp, const SaveRoom& room, bool saved) {
  std::remove(BallastPath(path).c_str());
  struct stat st;
  if (!saved || ::stat(tmp.c_str(), &st) != 0 || st.st_size >= room.total) return;
  int fd = ::open(tmp.c_str(), O_WRONLY);
  if (fd < 0) return;
  (void)::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size, room.total - st.st_size);
  ::close(fd);
}

}  // namespace baton
