// Tests of Simulate: the textbook bubble formulas come out exactly
// (GPipe and 1F1B (p−1)/(m+p−1), interleaved (p−1)/(v·m+p−1), ZB-H1
// (p−1)/(3m+p−1) from Qi et al. 2023), ZB-H1 beats 1F1B at the same peak
// activation count, peaks follow slot order, message latency delays the
// dependent stage, and an invalid schedule is refused with the validator's
// error.
#include "parallel/schedule_simulate.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

SimResult SimulateBuilt(const ScheduleSpec& spec, const Costs& costs = {}) {
  absl::StatusOr<Schedule> s = BuildSchedule(spec);
  EXPECT_TRUE(s.ok()) << s.status();
  absl::StatusOr<SimResult> r = Simulate(*s, spec, costs);
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

int MaxOf(const std::vector<int>& v) { return *std::max_element(v.begin(), v.end()); }

// Integer costs give integer makespans, so these compare exactly; the bubble
// is one division away from the formula, hence the 1e-12.
TEST(Simulate, GPipeAnd1F1BBubbleIsTextbook) {
  for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
    for (int p = 1; p <= 8; ++p) {
      for (int m = 1; m <= 16; ++m) {
        const ScheduleSpec spec{kind, p, m};
        const SimResult r = SimulateBuilt(spec);  // F = 1, B = 2, comm = 0
        EXPECT_EQ(r.makespan, 3.0 * (m + p - 1)) << ToString(spec);
        EXPECT_NEAR(r.bubble, double(p - 1) / (m + p - 1), 1e-12) << ToString(spec);
        for (int st = 0; st < p; ++st) EXPECT_EQ(r.busy[st], 3.0 * m);
      }
    }
  }
}

TEST(Simulate, InterleavedBubbleShrinksByV) {
  int checked = 0;
  for (int p = 1; p <= 8; ++p) {
    for (int v = 2; v <= 3; ++v) {
      for (int m = p; m <= 16; m += p) {
        const ScheduleSpec spec{ScheduleKind::kInterleaved1F1B, p, m, v};
        Costs c;
        c.forward = 1.0 / v;  // a chunk is 1/v of a stage
        c.backward = 2.0 / v;
        const SimResult r = SimulateBuilt(spec, c);
        EXPECT_NEAR(r.bubble, double(p - 1) / (v * m + p - 1), 1e-12) << ToString(spec);
        EXPECT_NEAR(r.makespan, 3.0 * m + 3.0 * (p - 1) / v, 1e-9) << ToString(spec);
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 2 * (16 + 8 + 5 + 4 + 3 + 2 + 2 + 2));
  // Negative: the same schedule is not at the non-interleaved 1F1B bubble.
  Costs c;
  c.forward = 0.5;
  c.backward = 1.0;
  EXPECT_LT(SimulateBuilt({ScheduleKind::kInterleaved1F1B, 4, 8, 2}, c).bubble, 3.0 / 11 - 0.1);
}

TEST(Simulate, ZeroBubbleH1BeatsOneFOneBAtTheSamePeak) {
  for (int p = 2; p <= 8; ++p) {
    for (int m = p; m <= 16; ++m) {
      const SimResult one = SimulateBuilt({ScheduleKind::k1F1B, p, m});          // F = 1, B = 2
      const SimResult zb = SimulateBuilt({ScheduleKind::kZeroBubbleH1, p, m});   // F = 1, I = 1, W = 1
      EXPECT_LT(zb.bubble, one.bubble) << "p=" << p << " m=" << m;
      // Paper: bubble (p−1)(T_F + T_B − T_W) vs 1F1B's (p−1)(T_F + T_B + T_W).
      EXPECT_EQ(zb.makespan, 3.0 * m + (p - 1)) << "p=" << p << " m=" << m;
      EXPECT_NEAR(zb.bubble, double(p - 1) / (3 * m + p - 1), 1e-12);
      EXPECT_EQ(one.peak_activations[0], p);
      EXPECT_EQ(MaxOf(zb.peak_activations), MaxOf(one.peak_activations));
      // Counting memory until W, every ZB-H1 stage holds at most p, like 1F1B's stage 0.
      EXPECT_EQ(MaxOf(zb.peak_in_flight), p);
    }
  }
}

TEST(Simulate, ZeroBubbleVIsBelowZeroBubbleH1) {
  Costs half;  // per chunk: half a stage
  half.forward = half.backward_input = half.backward_weight = 0.5;
  for (int p = 1; p <= 8; ++p) {
    for (int m = 2 * p; m <= 16; ++m) {
      const SimResult v = SimulateBuilt({ScheduleKind::kZeroBubbleV, p, m, 2}, half);
      // 3m of work plus the ramp of the first forward through p−1 chunks.
      EXPECT_EQ(v.makespan, 3.0 * m + 0.5 * (p - 1)) << "p=" << p << " m=" << m;
      EXPECT_EQ(MaxOf(v.peak_activations), 2 * p);  // 2p half-stage chunks = p stages' worth
      if (p > 1) {
        EXPECT_LT(v.bubble, SimulateBuilt({ScheduleKind::kZeroBubbleH1, p, m}).bubble);
      }
    }
  }
}

TEST(Simulate, PeakActivationsFollowSlotOrder) {
  const SimResult gpipe = SimulateBuilt({ScheduleKind::kGPipe, 4, 8});
  EXPECT_THAT(gpipe.peak_activations, ElementsAre(8, 8, 8, 8));
  const SimResult one = SimulateBuilt({ScheduleKind::k1F1B, 4, 8});
  EXPECT_THAT(one.peak_activations, ElementsAre(4, 3, 2, 1));
  const SimResult few = SimulateBuilt({ScheduleKind::k1F1B, 4, 2});
  EXPECT_THAT(few.peak_activations, ElementsAre(2, 2, 2, 1));
  const SimResult zb = SimulateBuilt({ScheduleKind::kZeroBubbleH1, 4, 8});
  EXPECT_THAT(zb.peak_activations, ElementsAre(4, 3, 2, 1));
  EXPECT_THAT(zb.peak_in_flight, ElementsAre(4, 4, 4, 4));
}

TEST(Simulate, CommLatencyDelaysTheDependentStage) {
  Costs c;
  c.comm = 0.5;
  // F on stage 0, message, F and B on stage 1, message, B on stage 0.
  const SimResult r = SimulateBuilt({ScheduleKind::k1F1B, 2, 1}, c);
  EXPECT_EQ(r.makespan, 1 + 0.5 + 1 + 2 + 0.5 + 2);
  EXPECT_EQ(r.timeline[1][0].start, 1.5);
  EXPECT_EQ(r.timeline[0][1].start, 5.0);
  EXPECT_NEAR(r.stage_bubble[0], 1 - 3 / 7.0, 1e-12);
}

TEST(Simulate, RefusesAnInvalidSchedule) {
  const ScheduleSpec spec{ScheduleKind::k1F1B, 2, 2};
  absl::StatusOr<Schedule> s = BuildSchedule(spec);
  ASSERT_TRUE(s.ok());
  (*s)[1].erase((*s)[1].begin());  // stage 1's first receive
  absl::StatusOr<SimResult> r = Simulate(*s, spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("0SEND_F0>1 has no matching 0RECV_F0<0"));
}

TEST(FormatTimeline, OneFOneBTwoStages) {
  const SimResult r = SimulateBuilt({ScheduleKind::k1F1B, 2, 2});
  EXPECT_EQ(FormatTimeline(r),
            "time  stage 0 stage 1\n"
            "   0  0F0     .\n"
            "   1  0F1     0F0\n"
            "   2  .       0B0\n"
            "   3  .       0B0\n"
            "   4  0B0     0F1\n"
            "   5  0B0     0B1\n"
            "   6  .       0B1\n"
            "   7  0B1     .\n"
            "   8  0B1     .\n");
}

}  // namespace
}  // namespace baton
