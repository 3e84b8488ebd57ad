// Metrics JSONL writer and run-manifest helpers (see metrics.h).
#include "launcher/metrics.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/rng.h"

namespace baton {

absl::StatusOr<MetricsWriter> MetricsWriter::Open(const std::string& path, bool append) {
  if (path.empty()) return MetricsWriter(nullptr, "");
  std::filesystem::path p(path);
  if (p.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(p.parent_path(), ec);
  }
  std::FILE* f = std::fopen(path.c_str(), append ? "a" : "w");
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("output.metrics: cannot open ", path, ": ", std::strerror(errno)));
  }
  return MetricsWriter(f, path);
}

absl::StatusOr<MetricsWriter> MetricsWriter::OpenAt(const std::string& path, int64_t start_step) {
  if (path.empty() || start_step <= 0 || !std::filesystem::exists(path)) return Open(path, start_step > 0);
  std::FILE* in = std::fopen(path.c_str(), "r");
  if (in == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("output.metrics: cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string kept, line;
  std::array<char, 4096> buf;
  bool dropped = false;
  while (std::fgets(buf.data(), buf.size(), in) != nullptr) {
    line += buf.data();
    if (line.back() != '\n' && !std::feof(in)) continue;  // a long line: read on
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    // A half-written last line (a killed run) is dropped with the redone steps.
    const bool redone = !j.is_object() ||
                        (j.contains("step") && j["step"].is_number() && j["step"].get<int64_t>() > start_step);
    if (redone) {
      dropped = true;
    } else {
      kept += line;
      if (kept.back() != '\n') kept.push_back('\n');
    }
    line.clear();
  }
  std::fclose(in);
  if (dropped) {
    const std::string tmp = path + ".tmp";
    std::FILE* out = std::fopen(tmp.c_str(), "w");
    if (out == nullptr || std::fwrite(kept.data(), 1, kept.size(), out) != kept.size() || std::fclose(out) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("output.metrics: cannot rewrite ", path, ": ", std::strerror(errno)));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("output.metrics: cannot rename ", tmp, ": ", ec.message()));
  }
  return Open(path, /*append=*/true);
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsWriter::Write(const nlohmann::json& object) {
  if (file_ == nullptr) return;
  std::string line = object.dump();
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

static std::string RunCommand(const char* cmd) {
  std::string out;
  std::FILE* p = popen(cmd, "r");
  if (p == nullptr) return out;
  std::array<char, 256> buf;
  while (std::fgets(buf.data(), buf.size(), p) != nullptr) out += buf.data();
  if (pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string GitRevision() {
  std::string rev = RunCommand("git rev-parse --short=12 HEAD 2>/dev/null");
  if (rev.empty()) return "unknown";
  if (!RunCommand("git status --porcelain --untracked-files=no 2>/dev/null").empty()) rev += "-dirty";
  return rev;
}

absl::StatusOr<std::string> HashFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  uint64_t h = kFnv1aOffset;
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h = Fnv1a64(std::string_view(buf.data(), n), h);
  std::fclose(f);
  return absl::StrFormat("%016x", h);
}

}  // namespace baton
