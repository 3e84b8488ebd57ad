// TraceRecorder, the Chrome trace JSON writer, and the gather of every
// rank's events to one writer. Events travel between ranks as text lines
// ("start\tend\tcategory\tname"), padded to whole i32 words, because the
// communicator moves tensors and the events are few (one per action).
#include "parallel/trace.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace baton {

namespace {

void Sanitize(std::string* s) {
  for (char& ch : *s) {
    if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
  }
}

// A JSON string literal, quotes included.
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) {
          out += absl::StrFormat("\\u%04x", ch);
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  out += "\"";
  return out;
}

// Nanoseconds as microseconds with three decimals (Chrome's unit).
std::string Micros(int64_t ns) {
  return absl::StrFormat("%s%d.%03d", ns < 0 ? "-" : "", std::abs(ns) / 1000, std::abs(ns) % 1000);
}

std::string Serialize(const TraceRecorder& recorder) {
  std::string out = absl::StrCat(recorder.rank(), "\t", recorder.row_name(), "\n");
  for (const TraceEvent& e : recorder.events()) {
    absl::StrAppend(&out, e.start_ns, "\t", e.end_ns, "\t", e.category, "\t", e.name, "\n");
  }
  return out;
}

// Inverse of Serialize; `source` names the sender in errors.
absl::Status Deserialize(absl::string_view text, const std::string& source, std::vector<TraceEvent>* events,
                         std::vector<TraceRow>* rows) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.empty()) return absl::DataLossError(absl::StrCat("trace from ", source, ": empty"));
  std::vector<absl::string_view> head = absl::StrSplit(lines[0], absl::MaxSplits('\t', 1));
  TraceRow row;
  if (head.size() != 2 || !absl::SimpleAtoi(head[0], &row.rank)) {
    return absl::DataLossError(absl::StrCat("trace from ", source, ": bad header \"", lines[0], "\""));
  }
  row.name = std::string(head[1]);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], absl::MaxSplits('\t', 3));
    TraceEvent e;
    if (f.size() != 4 || !absl::SimpleAtoi(f[0], &e.start_ns) || !absl::SimpleAtoi(f[1], &e.end_ns)) {
      return absl::DataLossError(absl::StrCat("trace from ", source, ": bad event \"", lines[i], "\""));
    }
    e.category = std::string(f[2]);
    e.name = std::string(f[3]);
    e.rank = row.rank;
    events->push_back(std::move(e));
  }
  rows->push_back(std::move(row));
  return absl::OkStatus();
}

}  // namespace

// ---- recorder ----

TraceRecorder::TraceRecorder(int rank, std::string row_name)
    : rank_(rank), row_name_(std::move(row_name)), origin_ns_(NowNs()) {
  Sanitize(&row_name_);
}

int64_t TraceRecorder::NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status TraceRecorder::SyncOrigin(Communicator& comm) {
  BATON_RETURN_IF_ERROR(comm.Barrier());
  const int64_t origin = NowNs();
  for (TraceEvent& e : events_) {
    e.start_ns += origin_ns_ - origin;
    e.end_ns += origin_ns_ - origin;
  }
  origin_ns_ = origin;
  return absl::OkStatus();
}

void TraceRecorder::Record(std::string name, std::string category, int64_t start_abs_ns, int64_t end_abs_ns) {
  Sanitize(&name);
  Sanitize(&category);
  events_.push_back(TraceEvent{std::move(name), std::move(category), start_abs_ns - origin_ns_,
                               std::max(start_abs_ns, end_abs_ns) - origin_ns_, rank_});
}

TraceRecorder::Scope::Scope(TraceRecorder* recorder, std::string name, std::string category)
    : recorder_(recorder),
      name_(std::move(name)),
      category_(std::move(category)),
      start_ns_(recorder ? NowNs() : 0) {}

TraceRecorder::Scope::~Scope() {
  if (recorder_ != nullptr) recorder_->Record(std::move(name_), std::move(category_), start_ns_, NowNs());
}

std::string TraceRowName(const Mesh& mesh) {
  return absl::StrCat("rank ", mesh.rank(), " (dp ", mesh.dp_rank(), ", pp ", mesh.pp_rank(), ", tp ",
                      mesh.tp_rank(), ")");
}

// ---- Chrome trace JSON ----

std::string ChromeTraceJson(const std::vector<TraceEvent>& events, const std::vector<TraceRow>& rows) {
  std::string out = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  auto add = [&](const std::string& obj) {
    absl::StrAppend(&out, first ? "  " : ",\n  ", obj);
    first = false;
  };
  for (const TraceRow& row : rows) {
    add(absl::StrCat("{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 0, \"tid\": ", row.rank,
                     ", \"args\": {\"name\": ", JsonString(row.name), "}}"));
    add(absl::StrCat("{\"name\": \"thread_sort_index\", \"ph\": \"M\", \"pid\": 0, \"tid\": ", row.rank,
                     ", \"args\": {\"sort_index\": ", row.rank, "}}"));
  }
  for (const TraceEvent& e : events) {
    add(absl::StrCat("{\"name\": ", JsonString(e.name), ", \"cat\": ", JsonString(e.category),
                     ", \"ph\": \"X\", \"pid\": 0, \"tid\": ", e.rank, ", \"ts\": ", Micros(e.start_ns),
                     ", \"dur\": ", Micros(std::max<int64_t>(0, e.end_ns - e.start_ns)), "}"));
  }
  out += "\n]}\n";
  return out;
}

absl::Status WriteChromeTrace(const std::string& path, const std::vector<TraceEvent>& events,
                              const std::vector<TraceRow>& rows) {
  const std::string json = ChromeTraceJson(events, rows);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("writing trace ", path));
  }
  const size_t written = std::fwrite(json.data(), 1, json.size(), f);
  const int err = errno;
  if (std::fclose(f) != 0 || written != json.size()) {
    return absl::ErrnoToStatus(err, absl::StrCat("writing trace ", path, ": wrote ", written, " of ",
                                                 json.size(), " bytes"));
  }
  return absl::OkStatus();
}

// ---- gather ----

absl::Status GatherChromeTrace(Communicator& comm, const TraceRecorder& recorder, const std::string& path,
                               int root) {
  const int n = comm.size();
  if (root < 0 || root >= n) {
    return absl::InvalidArgumentError(absl::StrCat("GatherChromeTrace: root ", root, " outside 0..", n - 1));
  }
  std::string text = Serialize(recorder);
  const int64_t words = static_cast<int64_t>((text.size() + 3) / 4);
  text.resize(static_cast<size_t>(words) * 4, '\n');  // padding parses as empty lines

  Tensor my_words = Tensor::Empty({1}, DType::kI32);
  my_words.data<int32_t>()[0] = static_cast<int32_t>(words);
  Tensor all_words = Tensor::Empty({n}, DType::kI32);
  BATON_RETURN_IF_ERROR(comm.AllGather(my_words, all_words));

  if (comm.rank() != root) {
    Tensor payload = Tensor::Borrow(text.data(), {words}, DType::kI32);
    return comm.Send(payload, root, kMaxCommTag);
  }
  std::vector<TraceEvent> events;
  std::vector<TraceRow> rows;
  for (int r = 0; r < n; ++r) {
    std::string received;
    if (r == root) {
      received = text;
    } else {
      received.resize(static_cast<size_t>(all_words.data<int32_t>()[r]) * 4);
      Tensor payload = Tensor::Borrow(received.data(), {all_words.data<int32_t>()[r]}, DType::kI32);
      BATON_RETURN_IF_ERROR(comm.Recv(payload, r, kMaxCommTag));
    }
    BATON_RETURN_IF_ERROR(Deserialize(received, absl::StrCat("rank ", r), &events, &rows));
  }
  return WriteChromeTrace(path, events, rows);
}

}  // namespace baton
