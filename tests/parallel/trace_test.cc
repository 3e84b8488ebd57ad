// Tests of the Chrome trace writer and the recorder, in one process: the
// JSON parses, has one complete event per recorded event with ts/dur in
// microseconds on the recorder's row, one thread_name per row, survives
// names that need escaping, and a write to a bad path is an error naming
// it. The multi-rank gather is tested in pipeline_executor_mpitest.cc.
#include "parallel/trace.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

std::vector<json> EventsWithPhase(const json& doc, const std::string& ph) {
  std::vector<json> out;
  for (const json& e : doc.at("traceEvents")) {
    if (e.at("ph") == ph) out.push_back(e);
  }
  return out;
}

TEST(ChromeTraceTest, CompleteEventsInMicrosecondsOneRowPerRank) {
  std::vector<TraceEvent> events = {
      {"F0.0", "compute", 1500, 4250, 0},
      {"wait 0RECV_F0<0", "comm", 0, 2000, 1},
      {"F0.0", "compute", 2000, 3000, 1},
  };
  std::vector<TraceRow> rows = {{0, "rank 0 (dp 0, pp 0, tp 0)"}, {1, "rank 1 (dp 0, pp 1, tp 0)"}};
  const json doc = json::parse(ChromeTraceJson(events, rows));

  const std::vector<json> x = EventsWithPhase(doc, "X");
  ASSERT_EQ(x.size(), 3u);
  EXPECT_EQ(x[0].at("name"), "F0.0");
  EXPECT_EQ(x[0].at("cat"), "compute");
  EXPECT_EQ(x[0].at("pid"), 0);
  EXPECT_EQ(x[0].at("tid"), 0);
  EXPECT_DOUBLE_EQ(x[0].at("ts").get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(x[0].at("dur").get<double>(), 2.75);
  EXPECT_EQ(x[1].at("cat"), "comm");
  EXPECT_EQ(x[1].at("tid"), 1);
  EXPECT_DOUBLE_EQ(x[2].at("ts").get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(x[2].at("dur").get<double>(), 1.0);

  const std::vector<json> m = EventsWithPhase(doc, "M");
  std::vector<std::string> names;
  for (const json& e : m) {
    if (e.at("name") == "thread_name") names.push_back(e.at("args").at("name"));
    if (e.at("name") == "thread_sort_index") {
      EXPECT_EQ(e.at("args").at("sort_index"), e.at("tid"));
    }
  }
  EXPECT_THAT(names, ::testing::ElementsAre("rank 0 (dp 0, pp 0, tp 0)", "rank 1 (dp 0, pp 1, tp 0)"));
}

TEST(ChromeTraceTest, EscapesNamesThatAreNotPlainJson) {
  const std::string odd = "a \"quoted\" \\ name\x01";
  const json doc = json::parse(ChromeTraceJson({{odd, "compute", 0, 1000, 3}}, {{3, "row \"3\""}}));
  const std::vector<json> x = EventsWithPhase(doc, "X");
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].at("name"), odd);
  EXPECT_EQ(EventsWithPhase(doc, "M")[0].at("args").at("name"), "row \"3\"");
}

TEST(ChromeTraceTest, WritesAFileThatParses) {
  const std::string path = ::testing::TempDir() + "trace_test.json";
  ASSERT_TRUE(WriteChromeTrace(path, {{"B1.0", "compute", 10, 20, 0}}, {{0, "rank 0"}}).ok());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const json doc = json::parse(text.str());
  EXPECT_EQ(EventsWithPhase(doc, "X").size(), 1u);
  std::remove(path.c_str());
}

TEST(ChromeTraceTest, BadPathIsAnErrorNamingIt) {
  const absl::Status st = WriteChromeTrace("/nonexistent-dir-baton/trace.json", {}, {});
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("/nonexistent-dir-baton/trace.json"));
}

TEST(TraceRecorderTest, ScopeRecordsOneEventOnItsRow) {
  TraceRecorder rec(7, "rank 7");
  {
    TraceRecorder::Scope scope(&rec, "F2.1", "compute");
  }
  { TraceRecorder::Scope nothing(nullptr, "ignored", "compute"); }
  ASSERT_EQ(rec.events().size(), 1u);
  const TraceEvent& e = rec.events()[0];
  EXPECT_EQ(e.name, "F2.1");
  EXPECT_EQ(e.category, "compute");
  EXPECT_EQ(e.rank, 7);
  EXPECT_GE(e.start_ns, 0);
  EXPECT_GE(e.end_ns, e.start_ns);
  rec.Clear();
  EXPECT_TRUE(rec.events().empty());
}

TEST(TraceRecorderTest, TimesAreRelativeToTheOriginAndNeverNegativeInLength) {
  TraceRecorder rec(0, "rank 0\tweird\nname");
  EXPECT_EQ(rec.row_name(), "rank 0 weird name");  // tabs/newlines would break the gather's framing
  const int64_t t = TraceRecorder::NowNs();
  rec.Record("a\tb", "comm", t + 5000, t + 2000);  // end before start: clamped to zero length
  ASSERT_EQ(rec.events().size(), 1u);
  EXPECT_EQ(rec.events()[0].name, "a b");
  EXPECT_GE(rec.events()[0].start_ns, 5000);
  EXPECT_EQ(rec.events()[0].end_ns, rec.events()[0].start_ns);
}

TEST(TraceRowNameTest, NamesRankAndCoordinates) {
  absl::StatusOr<Mesh> mesh = Mesh::Create(MeshShape{2, 2, 2}, 8, 5);
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  EXPECT_EQ(TraceRowName(*mesh), "rank 5 (dp 0, pp 1, tp 1)");
}

}  // namespace
}  // namespace baton
