// Metrics JSONL: the run's machine-readable record. The first line is the
// manifest (config, git revision, data hash); then one object per step
// (step, loss, lr, grad_norm, tokens_per_s, ...) and one per validation
// (step, val_loss). Each line is flushed as written so a crashed run still
// leaves every finished step on disk. A resumed run is one more segment of
// the same file: it starts with its own manifest line (start_step,
// resumed_from), and the lines of steps after start_step that the earlier
// segment wrote past its last checkpoint are dropped first, so the file
// reads as one curve with each step once.
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace baton {

class MetricsWriter {
 public:
  // Appends when `append` (a resumed run), truncates otherwise. Empty path: no-op writer.
  static absl::StatusOr<MetricsWriter> Open(const std::string& path, bool append);
  // For a run starting after `start_step` (0: a fresh run, truncates): keeps
  // the existing lines up to start_step (step > start_step lines are redone
  // and dropped; the file is rewritten through a temporary and a rename) and
  // appends after them.
  static absl::StatusOr<MetricsWriter> OpenAt(const std::string& path, int64_t start_step);
  MetricsWriter(MetricsWriter&& o) noexcept : file_(o.file_), path_(std::move(o.path_)) { o.file_ = nullptr; }
  MetricsWriter& operator=(MetricsWriter&&) = delete;
  ~MetricsWriter();

  void Write(const nlohmann::json& object);
  const std::string& path() const { return path_; }

 private:
  MetricsWriter(std::FILE* f, std::string path) : file_(f), path_(std::move(path)) {}
  std::FILE* file_ = nullptr;
  std::string path_;
};

// The git revision of the working directory ("unknown" outside a clone;
// "-dirty" appended when tracked files changed).
std::string GitRevision();

// FNV-1a 64 over a file's bytes, as 16 hex digits; used to pin the data a run saw.
absl::StatusOr<std::string> HashFile(const std::string& path);

}  // namespace baton
