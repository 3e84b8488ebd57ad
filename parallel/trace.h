// A step's real timeline, as Chrome trace JSON (`output.trace`): every rank
// records what it ran (compute) and how long it waited (comm) with a steady
// clock into a TraceRecorder; GatherChromeTrace brings every rank's events to
// one rank over a communicator and writes one file with one row per rank,
// viewable in Perfetto (ui.perfetto.dev) or chrome://tracing. The pipeline
// executor records into it; the training driver owns it and decides which
// steps to keep (Clear() between steps it does not want).
// Invariant: each event's times are nanoseconds since the recorder's origin
// (SyncOrigin lines the ranks' origins up with a barrier), end >= start.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parallel/communicator.h"
#include "parallel/mesh.h"

namespace baton {

struct TraceEvent {
  std::string name;      // "F3.0": op, micro-batch, chunk (as the executor names them)
  std::string category;  // "compute" or "comm"
  int64_t start_ns = 0;  // since the recorder's origin
  int64_t end_ns = 0;    // since the recorder's origin; >= start_ns
  int rank = 0;          // the row (Chrome "tid")
};

// Rows of the written trace: one per rank, labelled `name`.
struct TraceRow {
  int rank = 0;
  std::string name;  // "rank 5 (dp 0, pp 1, tp 1)"
};

class TraceRecorder {
 public:
  // `rank` is the row this recorder's events go to (the world rank);
  // `row_name` labels it (TraceRowName). The origin is "now".
  TraceRecorder(int rank, std::string row_name);

  int rank() const { return rank_; }
  const std::string& row_name() const { return row_name_; }

  // Steady clock (CLOCK_MONOTONIC), nanoseconds since an arbitrary epoch.
  static int64_t NowNs();

  // Collective over `comm`: a barrier, then every rank sets its origin to
  // now, so rows of different ranks share one time axis (to the barrier's
  // skew, microseconds). Events recorded earlier are shifted to the new origin.
  absl::Status SyncOrigin(Communicator& comm);

  // An event between two NowNs() readings. Tabs and newlines in `name`
  // become spaces (they separate fields when events travel between ranks).
  void Record(std::string name, std::string category, int64_t start_abs_ns, int64_t end_abs_ns);

  // Records [construction, destruction) of the scope as one event.
  class Scope {
   public:
    Scope(TraceRecorder* recorder, std::string name, std::string category);  // recorder may be null
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TraceRecorder* recorder_;
    std::string name_, category_;
    int64_t start_ns_;
  };

  const std::vector<TraceEvent>& events() const { return events_; }
  void Clear() { events_.clear(); }

 private:
  int rank_;
  std::string row_name_;
  int64_t origin_ns_;
  std::vector<TraceEvent> events_;
};

// "rank 5 (dp 0, pp 1, tp 1)": the row label of this rank of `mesh`.
std::string TraceRowName(const Mesh& mesh);

// The Chrome trace JSON document: {"traceEvents": [...], "displayTimeUnit": "ms"}
// with one complete event (ph "X", pid 0, tid = rank, ts/dur in microseconds,
// cat = category) per event, and per row a thread_name and a
// thread_sort_index metadata event (ph "M"), so Perfetto shows rows in rank order.
std::string ChromeTraceJson(const std::vector<TraceEvent>& events, const std::vector<TraceRow>& rows);

// Writes ChromeTraceJson to `path` (replacing it). Errors name the path.
absl::Status WriteChromeTrace(const std::string& path, const std::vector<TraceEvent>& events,
                              const std::vector<TraceRow>& rows);

// Collective over `comm`: every rank's recorder events and row travel to
// `root` (point-to-point, tag kMaxCommTag; call it when no other message
// with that tag is in flight on `comm`), which writes one trace to `path`.
// Other ranks ignore `path`. Every rank returns root's write status only if
// it is its own; a failed transfer is returned where it happens.
absl::Status GatherChromeTrace(Communicator& comm, const TraceRecorder& recorder, const std::string& path,
                               int root = 0);

}  // namespace baton
