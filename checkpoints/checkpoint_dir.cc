// Checkpoint directory management (see checkpoint_dir.h).
#include "checkpoints/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/check.h"

namespace baton {
namespace {

namespace fs = std::filesystem;

constexpr char kLatest[] = "latest";

std::string Join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::Status Errno(const std::string& what, const std::string& path, int err) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

absl::Status FsyncFd(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return Errno("open", path, errno);
  int r = ::fsync(fd);
  int err = errno;
  ::close(fd);
  return r == 0 ? absl::OkStatus() : Errno("fsync", path, err);
}

struct StepFile {
  int64_t step;
  std::string path;
};

// step_*.h5 files of dir, newest first.
absl::StatusOr<std::vector<StepFile>> ListSteps(const std::string& dir) {
  std::vector<StepFile> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir.empty() ? "." : dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::optional<int64_t> step = CheckpointStep(name);
    if (step && it->is_regular_file()) out.push_back({*step, Join(dir, name)});
  }
  if (ec) return absl::InternalError(absl::StrCat("listing checkpoint dir ", dir, ": ", ec.message()));
  std::sort(out.begin(), out.end(), [](const StepFile& a, const StepFile& b) { return a.step > b.step; });
  return out;
}

// The file name dir/latest holds, "" if there is no such file.
absl::StatusOr<std::string> ReadLatestName(const std::string& dir) {
  std::string path = Join(dir, kLatest);
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return errno == ENOENT ? absl::StatusOr<std::string>("") : Errno("cannot read", path, errno);
  char buf[256] = {};
  bool read = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  std::string name = read ? buf : "";
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  if (!CheckpointStep(name) || name.find('/') != std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": names '", name, "', expected a file name like step_00000100.h5"));
  return name;
}

// A temporary of an interrupted save: step_N.h5.tmp, its ballast
// step_N.h5.tmp.room (dist_checkpoint_write.cc), or latest.tmp.
bool IsSaveTemporary(const std::string& name) {
  for (const char* suffix : {".tmp", ".tmp.room"}) {
    if (name.ends_with(suffix) && CheckpointStep(name.substr(0, name.size() - std::strlen(suffix)))) return true;
  }
  return name == std::string(kLatest) + ".tmp";
}

}  // namespace

absl::Status OpenCheckpointDir(const std::string& dir) {
  const std::string d = dir.empty() ? "." : dir;
  std::error_code ec;
  fs::create_directories(d, ec);
  if (ec || !fs::is_directory(d) || ::access(d.c_str(), W_OK | X_OK) != 0) {
    const std::string why = ec ? ec.message() : std::strerror(fs::is_directory(d) ? errno : ENOTDIR);
    return absl::InvalidArgumentError(absl::StrCat("checkpoint.dir ", dir, ": cannot write there: ", why));
  }
  for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsSaveTemporary(name)) continue;
    if (std::remove(it->path().c_str()) != 0 && errno != ENOENT) return Errno("cannot remove", it->path(), errno);
  }
  if (ec) return absl::InternalError(absl::StrCat("listing checkpoint dir ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

std::string CheckpointPath(const std::string& dir, int64_t step) {
  return Join(dir, absl::StrFormat("step_%08d.h5", step));
}

std::optional<int64_t> CheckpointStep(const std::string& path) {
  std::string name = BaseName(path);
  constexpr std::string_view kPrefix = "step_", kSuffix = ".h5";
  if (name.size() <= kPrefix.size() + kSuffix.size() || !name.starts_with(kPrefix) || !name.ends_with(kSuffix))
    return std::nullopt;
  std::string digits = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

absl::Status CommitLatest(const std::string& dir, const std::string& path) {
  std::string name = BaseName(path);
  if (!CheckpointStep(name))
    return absl::InvalidArgumentError(absl::StrCat("CommitLatest: '", path, "' is not a step_NNNNNNNN.h5 file"));
  std::string latest = Join(dir, kLatest), tmp = latest + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return Errno("cannot write", tmp, errno);
  bool ok = std::fprintf(f, "%s\n", name.c_str()) > 0 && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return Errno("cannot write", tmp, err);
  }
  if (std::rename(tmp.c_str(), latest.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return Errno(absl::StrCat("rename ", tmp, " to"), latest, err);
  }
  return FsyncFd(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

absl::StatusOr<std::optional<std::string>> FindLatest(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir.empty() ? "." : dir, ec)) return std::optional<std::string>();
  BATON_ASSIGN_OR_RETURN(std::string name, ReadLatestName(dir));
  if (!name.empty() && fs::is_regular_file(Join(dir, name), ec)) return std::optional<std::string>(Join(dir, name));
  BATON_ASSIGN_OR_RETURN(std::vector<StepFile> steps, ListSteps(dir));
  if (steps.empty()) return std::optional<std::string>();
  return std::optional<std::string>(steps.front().path);
}

absl::Status Prune(const std::string& dir, int keep) {
  if (keep < 0) return absl::InvalidArgumentError(absl::StrCat("Prune: keep=", keep, " must be >= 0"));
  if (keep == 0) return absl::OkStatus();
  BATON_ASSIGN_OR_RETURN(std::string latest, ReadLatestName(dir));
  BATON_ASSIGN_OR_RETURN(std::vector<StepFile> steps, ListSteps(dir));
  for (size_t i = static_cast<size_t>(keep); i < steps.size(); ++i) {
    if (BaseName(steps[i].path) == latest) continue;
    if (std::remove(steps[i].path.c_str()) != 0 && errno != ENOENT) return Errno("cannot remove", steps[i].path, errno);
  }
  return absl::OkStatus();
}

}  // namespace baton
