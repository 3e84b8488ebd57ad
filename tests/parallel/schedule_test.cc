// Tests of schedules as data: "2F0" printing and parsing, the part layout
// (Megatron's interleaving, ZB-V's V), the generators' exact orders and
// spec errors, and ValidateSchedule on every generated schedule plus
// hand-broken ones (missing receive, swapped order, duplicated F, deadlock),
// each failing with its own message and the bad slot marked in the grid.
#include "parallel/schedule.h"

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/schedule_simulate.h"
#include "parallel/schedule_validate.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

std::string Join(const std::vector<Action>& ops) {
  return absl::StrJoin(ops, " ", [](std::string* out, const Action& a) { out->append(ToString(a)); });
}

std::vector<Action> Parse(const std::string& text) {
  std::vector<Action> ops;
  for (absl::string_view t : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    absl::StatusOr<Action> a = ParseAction(std::string_view(t.data(), t.size()));
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok()) ops.push_back(*a);
  }
  return ops;
}

void ExpectInvalid(const absl::Status& st, const std::string& needle) {
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(needle));
}

// ---- actions ----

TEST(Action, PrintsTorchtitanStyle) {
  EXPECT_EQ(ToString(Action{Op::kForward, 0, 2}), "2F0");
  EXPECT_EQ(ToString(Action{Op::kBackward, 5, 0}), "0B5");
  EXPECT_EQ(ToString(Action{Op::kBackwardInput, 2, 1}), "1I2");
  EXPECT_EQ(ToString(Action{Op::kBackwardWeight, 12, 0}), "0W12");
  EXPECT_EQ(ToString(Action{Op::kSendAct, 3, 1, 2}), "1SEND_F3>2");
  EXPECT_EQ(ToString(Action{Op::kRecvAct, 3, 0, 0}), "0RECV_F3<0");
  EXPECT_EQ(ToString(Action{Op::kSendGrad, 4, 0, 1}), "0SEND_B4>1");
  EXPECT_EQ(ToString(Action{Op::kRecvGrad, 4, 0, 1}), "0RECV_B4<1");
}

TEST(Action, ParseRoundTrips) {
  const std::vector<Action> all = {
      {Op::kForward, 0, 2},         {Op::kBackward, 15, 0},      {Op::kBackwardInput, 2, 1},
      {Op::kBackwardWeight, 7, 3},  {Op::kSendAct, 3, 1, 2},     {Op::kRecvAct, 10, 0, 11},
      {Op::kSendGrad, 4, 0, 1},     {Op::kRecvGrad, 4, 2, 0},    {Op::kSendAct, 1, 0}};
  for (const Action& a : all) {
    absl::StatusOr<Action> back = ParseAction(ToString(a));
    ASSERT_TRUE(back.ok()) << ToString(a) << ": " << back.status();
    EXPECT_EQ(*back, a) << ToString(a);
  }
  absl::StatusOr<Action> a = ParseAction("12W105");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->op, Op::kBackwardWeight);
  EXPECT_EQ(a->chunk, 12);
  EXPECT_EQ(a->microbatch, 105);
  EXPECT_EQ(a->peer, -1);
}

TEST(Action, ParseRejectsMalformedText) {
  ExpectInvalid(ParseAction("").status(), "expected a chunk number first");
  ExpectInvalid(ParseAction("F3").status(), "expected a chunk number first");
  ExpectInvalid(ParseAction("0X3").status(), "unknown op at \"X3\"");
  ExpectInvalid(ParseAction("0F").status(), "expected a micro-batch number after F");
  ExpectInvalid(ParseAction("0F3>1").status(), "compute actions take no peer");
  ExpectInvalid(ParseAction("0SEND_F3<1").status(), "names its peer as >STAGE");
  ExpectInvalid(ParseAction("0RECV_B3<").status(), "expected a peer stage number after <");
  ExpectInvalid(ParseAction("0RECV_B3<1x").status(), "expected a peer stage number after <");
}

TEST(ScheduleKind, NamesRoundTrip) {
  for (ScheduleKind k : {ScheduleKind::kGPipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved1F1B,
                         ScheduleKind::kZeroBubbleH1, ScheduleKind::kZeroBubbleV}) {
    absl::StatusOr<ScheduleKind> back = ParseScheduleKind(ScheduleKindName(k));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, k);
  }
  ExpectInvalid(ParseScheduleKind("zb-h2").status(), "unknown schedule \"zb-h2\"");
}

// ---- layout ----

TEST(Layout, MegatronInterleavingAndZbV) {
  const ScheduleSpec inter{ScheduleKind::kInterleaved1F1B, 4, 8, 2};
  EXPECT_EQ(ModelPart(inter, 1, 0), 1);
  EXPECT_EQ(ModelPart(inter, 1, 1), 5);  // c·p + s
  EXPECT_EQ(LocatePart(inter, 6).stage, 2);
  EXPECT_EQ(LocatePart(inter, 6).chunk, 1);
  const ScheduleSpec v{ScheduleKind::kZeroBubbleV, 4, 8, 2};
  EXPECT_EQ(ModelPart(v, 0, 1), 7);  // stage 0 holds the first and the last part
  EXPECT_EQ(ModelPart(v, 3, 0), 3);
  EXPECT_EQ(ModelPart(v, 3, 1), 4);  // the turn of the V stays on stage 3
  for (const ScheduleSpec& spec : {inter, v, ScheduleSpec{ScheduleKind::kGPipe, 3, 2, 3}}) {
    for (int k = 0; k < NumParts(spec); ++k) {
      const PartLocation loc = LocatePart(spec, k);
      EXPECT_EQ(ModelPart(spec, loc.stage, loc.chunk), k) << ToString(spec);
    }
  }
  // Peers: part 4 of ZB-V lives on stage 3 with part 3, so its input needs no message.
  EXPECT_EQ(ExpectedPeer(v, 3, Action{Op::kRecvAct, 0, 1, -1}), 3);
  EXPECT_EQ(ExpectedPeer(v, 2, Action{Op::kRecvAct, 0, 1, -1}), 3);
  EXPECT_EQ(ExpectedPeer(v, 0, Action{Op::kSendAct, 0, 1, -1}), -1);  // part 7 is the last
}

// ---- generators ----

TEST(BuildSchedule, OneFOneBOrder) {
  absl::StatusOr<Schedule> s = BuildSchedule({ScheduleKind::k1F1B, 4, 8});
  ASSERT_TRUE(s.ok()) << s.status();
  const Schedule c = ComputeOnly(*s);
  EXPECT_EQ(Join(c[0]), "0F0 0F1 0F2 0F3 0B0 0F4 0B1 0F5 0B2 0F6 0B3 0F7 0B4 0B5 0B6 0B7");
  EXPECT_EQ(Join(c[3]), "0F0 0B0 0F1 0B1 0F2 0B2 0F3 0B3 0F4 0B4 0F5 0B5 0F6 0B6 0F7 0B7");
  // The comm pass: receive just before, send just after.
  EXPECT_EQ(Join(std::vector<Action>((*s)[1].begin(), (*s)[1].begin() + 6)),
            "0RECV_F0<0 0F0 0SEND_F0>2 0RECV_F1<0 0F1 0SEND_F1>2");
  EXPECT_EQ(Join((*s)[3]).substr(0, 45), "0RECV_F0<2 0F0 0B0 0SEND_B0>2 0RECV_F1<2 0F1 ");
}

TEST(BuildSchedule, GPipeOrder) {
  absl::StatusOr<Schedule> s = BuildSchedule({ScheduleKind::kGPipe, 2, 3});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(Join((*s)[0]), "0F0 0SEND_F0>1 0F1 0SEND_F1>1 0F2 0SEND_F2>1 "
                           "0RECV_B0<1 0B0 0RECV_B1<1 0B1 0RECV_B2<1 0B2");
}

TEST(BuildSchedule, InterleavedOrderIsDepthFirstInGroupsOfP) {
  absl::StatusOr<Schedule> s = BuildSchedule({ScheduleKind::kInterleaved1F1B, 2, 4, 2});
  ASSERT_TRUE(s.ok());
  const Schedule c = ComputeOnly(*s);
  // Stage 0: warm-up 2·(p−1−0) + (v−1)·p = 4 forwards, micro-batches 0,1 on chunk 0 then chunk 1.
  EXPECT_EQ(Join(c[0]), "0F0 0F1 1F0 1F1 0F2 1B0 0F3 1B1 1F2 0B0 1F3 0B1 1B2 1B3 0B2 0B3");
  EXPECT_EQ(Join(c[1]), "0F0 0F1 1F0 1B0 1F1 1B1 0F2 0B0 0F3 0B1 1F2 1B2 1F3 1B3 0B2 0B3");
}

TEST(BuildSchedule, ZeroBubbleH1DefersWByStage) {
  absl::StatusOr<Schedule> s = BuildSchedule({ScheduleKind::kZeroBubbleH1, 4, 8});
  ASSERT_TRUE(s.ok());
  const Schedule c = ComputeOnly(*s);
  EXPECT_EQ(Join(c[0]),
            "0F0 0F1 0F2 0F3 0I0 0W0 0F4 0I1 0W1 0F5 0I2 0W2 0F6 0I3 0W3 0F7 0I4 0W4 0I5 0W5 0I6 0W6 0I7 0W7");
  EXPECT_EQ(Join(c[3]),
            "0F0 0I0 0F1 0I1 0F2 0I2 0F3 0I3 0W0 0F4 0I4 0W1 0F5 0I5 0W2 0F6 0I6 0W3 0F7 0I7 0W4 0W5 0W6 0W7");
}

TEST(BuildSchedule, ZeroBubbleVHandsOffLocallyAtTheTurn) {
  absl::StatusOr<Schedule> s = BuildSchedule({ScheduleKind::kZeroBubbleV, 2, 4, 2});
  ASSERT_TRUE(s.ok());
  // Stage 1 holds parts 1 and 2: its 1F0 follows 0F0 with no message between.
  EXPECT_EQ(Join(std::vector<Action>((*s)[1].begin(), (*s)[1].begin() + 4)), "0RECV_F0<0 0F0 1F0 1SEND_F0>0");
}

TEST(BuildSchedule, RejectsImpossibleSpecsNamingTheNumbers) {
  ExpectInvalid(BuildSchedule({ScheduleKind::kInterleaved1F1B, 4, 6, 2}).status(),
                "interleaved needs microbatches % stages == 0, got microbatches=6, stages=4");
  ExpectInvalid(BuildSchedule({ScheduleKind::k1F1B, 4, 8, 2}).status(),
                "1f1b needs virtual_stages=1, got virtual_stages=2");
  ExpectInvalid(BuildSchedule({ScheduleKind::kZeroBubbleH1, 4, 8, 3}).status(),
                "zb-h1 needs virtual_stages=1, got virtual_stages=3");
  ExpectInvalid(BuildSchedule({ScheduleKind::kZeroBubbleV, 4, 8, 1}).status(),
                "zb-v needs virtual_stages=2");
  ExpectInvalid(BuildSchedule({ScheduleKind::kGPipe, 0, 8}).status(), "stages=0 must be >= 1");
  ExpectInvalid(BuildSchedule({ScheduleKind::kGPipe, 2, 0}).status(), "microbatches=0 must be >= 1");
  // The same spec with m a multiple of p is fine.
  EXPECT_TRUE(BuildSchedule({ScheduleKind::kInterleaved1F1B, 4, 8, 2}).ok());
}

// Every generator, every shape: complete, ordered, matched, deadlock-free;
// and its forward-only variant (validation, inference prefill): F only.
TEST(BuildSchedule, EveryGeneratedSchedulePassesTheValidator) {
  int validated = 0;
  for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved1F1B,
                            ScheduleKind::kZeroBubbleH1, ScheduleKind::kZeroBubbleV}) {
    for (int p = 1; p <= 8; ++p) {
      for (int m = 1; m <= 16; ++m) {
        for (int v = 1; v <= 3; ++v) {
          const ScheduleSpec spec{kind, p, m, v};
          absl::StatusOr<Schedule> s = BuildSchedule(spec);
          if (!s.ok()) continue;  // rejected specs are tested above
          const absl::Status st = ValidateSchedule(*s, spec);
          ASSERT_TRUE(st.ok()) << st;
          const bool split = kind == ScheduleKind::kZeroBubbleH1 || kind == ScheduleKind::kZeroBubbleV;
          size_t compute = 0;
          for (const auto& ops : ComputeOnly(*s)) compute += ops.size();
          EXPECT_EQ(compute, static_cast<size_t>(p * m * v * (split ? 3 : 2))) << ToString(spec);
          ScheduleSpec fwd = spec;
          fwd.forward_only = true;
          absl::StatusOr<Schedule> f = BuildSchedule(fwd);
          ASSERT_TRUE(f.ok()) << f.status();
          ASSERT_TRUE(ValidateSchedule(*f, fwd).ok()) << ToString(fwd);
          for (const auto& ops : ComputeOnly(*f)) {
            EXPECT_EQ(static_cast<int>(ops.size()), m * v) << ToString(fwd);
            for (const Action& a : ops) EXPECT_EQ(a.op, Op::kForward) << ToString(fwd);
          }
          ++validated;
        }
      }
    }
  }
  // gpipe 384 + 1f1b 128 + interleaved (128 with v=1, 2·(16+8+5+4+3+2+2+2) with v>1)
  // + zb-h1 128 + zb-v 128.
  EXPECT_EQ(validated, 384 + 128 + 128 + 84 + 128 + 128);
}

// A forward-only schedule prints as such and runs the forward half of GPipe.
TEST(BuildSchedule, ForwardOnlyPrintsAndOrders) {
  ScheduleSpec spec{ScheduleKind::k1F1B, 2, 2};
  spec.forward_only = true;
  EXPECT_EQ(ToString(spec), "forward 1f1b(pp=2, m=2, v=1)");
  EXPECT_EQ(absl::StrJoin(BuildSchedule(spec)->at(1), " ", [](std::string* out, const Action& a) {
              out->append(ToString(a));
            }),
            "0RECV_F0<0 0F0 0RECV_F1<0 0F1");
}

TEST(ValidateSchedule, ForwardOnlyRefusesABackward) {
  ScheduleSpec spec{ScheduleKind::k1F1B, 2, 1};
  absl::StatusOr<Schedule> train = BuildSchedule(spec);  // F and B
  ASSERT_TRUE(train.ok());
  spec.forward_only = true;
  ExpectInvalid(ValidateSchedule(*train, spec), "a forward-only schedule runs no backward");
}

// No activation is kept from F to a backward; the bubble is the fill and drain of one pass.
TEST(Simulate, ForwardOnlyKeepsNothingAndHasTheFillDrainBubble) {
  for (int p : {1, 2, 4}) {
    for (int m : {1, 4, 8}) {
      ScheduleSpec spec{ScheduleKind::k1F1B, p, m};
      spec.forward_only = true;
      absl::StatusOr<Schedule> s = BuildSchedule(spec);
      ASSERT_TRUE(s.ok());
      absl::StatusOr<SimResult> r = Simulate(*s, spec);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_DOUBLE_EQ(r->makespan, m + p - 1) << ToString(spec);
      EXPECT_NEAR(r->bubble, (p - 1.0) / (m + p - 1.0), 1e-12) << ToString(spec);
      for (int st = 0; st < p; ++st) EXPECT_EQ(r->peak_activations[st], 0);
    }
  }
}

// ---- the grid ----

TEST(FormatScheduleGrid, MarksSlotsInBrackets) {
  absl::StatusOr<Schedule> s = BuildSchedule({ScheduleKind::k1F1B, 2, 1});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(FormatScheduleGrid(*s, {{1, 1}}),
            "slot   stage 0      stage 1\n"
            "   0    0F0          0RECV_F0<0\n"
            "   1    0SEND_F0>1  [0F0]\n"
            "   2    0RECV_B0<1   0B0\n"
            "   3    0B0          0SEND_B0>0\n");
}

// ---- the validator on broken schedules ----

// 1F1B, pp=2, m=2, written out by hand.
Schedule TwoStages() {
  return {Parse("0F0 0SEND_F0>1 0F1 0SEND_F1>1 0RECV_B0<1 0B0 0RECV_B1<1 0B1"),
          Parse("0RECV_F0<0 0F0 0B0 0SEND_B0>0 0RECV_F1<0 0F1 0B1 0SEND_B1>0")};
}
const ScheduleSpec kTwo{ScheduleKind::k1F1B, 2, 2};

TEST(ValidateSchedule, AcceptsTheHandWrittenSchedule) {
  EXPECT_TRUE(ValidateSchedule(TwoStages(), kTwo).ok());
  absl::StatusOr<Schedule> built = BuildSchedule(kTwo);
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(*built, TwoStages());
}

TEST(ValidateSchedule, MissingReceive) {
  Schedule s = TwoStages();
  s[1].erase(s[1].begin() + 4);  // 0RECV_F1<0
  const absl::Status st = ValidateSchedule(s, kTwo);
  ExpectInvalid(st, "stage 0 slot 3: 0SEND_F1>1 has no matching 0RECV_F1<0 on stage 1");
  EXPECT_THAT(std::string(st.message()), HasSubstr("[0SEND_F1>1]"));
}

TEST(ValidateSchedule, ForwardSwappedBeforeItsReceive) {
  Schedule s = TwoStages();
  std::swap(s[1][0], s[1][1]);
  const absl::Status st = ValidateSchedule(s, kTwo);
  ExpectInvalid(st, "stage 1 slot 0: 0F0 runs before its input arrives (no earlier 0RECV_F0<0)");
  EXPECT_THAT(std::string(st.message()), HasSubstr("   0    0F0         [0F0]"));
}

TEST(ValidateSchedule, DuplicatedForward) {
  Schedule s = TwoStages();
  s[0].insert(s[0].begin() + 4, Action{Op::kForward, 1, 0});
  ExpectInvalid(ValidateSchedule(s, kTwo), "duplicate 0F1 on stage 0 at slots 2 and 4");
}

TEST(ValidateSchedule, BackwardBeforeForwardOnOneStage) {
  Schedule s = TwoStages();
  std::swap(s[1][1], s[1][2]);  // 0B0 before 0F0 on the last stage
  ExpectInvalid(ValidateSchedule(s, kTwo), "stage 1 slot 1: 0B0 runs before its forward 0F0");
}

TEST(ValidateSchedule, DeadlockMarksEveryBlockedReceive) {
  // Stage 0 waits for micro-batch 0's gradient before sending micro-batch 1;
  // stage 1 wants micro-batch 1 before it runs micro-batch 0's backward.
  const Schedule s = AddCommunication({Parse("0F0 0B0 0F1 0B1"), Parse("0F0 0F1 0B0 0B1")}, kTwo);
  const absl::Status st = ValidateSchedule(s, kTwo);
  ExpectInvalid(st, "deadlock");
  EXPECT_THAT(std::string(st.message()), HasSubstr("stage 0 slot 2: 0RECV_B0<1 waits for 0SEND_B0>0 at stage 1 slot 5"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("stage 1 slot 2: 0RECV_F1<0 waits for 0SEND_F1>1 at stage 0 slot 5"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("   2   [0RECV_B0<1] [0RECV_F1<0]"));
}

TEST(ValidateSchedule, WrongPeerAndSelfMessage) {
  Schedule s = TwoStages();
  s[0][1].peer = 0;
  ExpectInvalid(ValidateSchedule(s, kTwo),
                "stage 0 slot 1: 0SEND_F0>0 names peer 0, but the neighbouring part of part 0 is on stage 1");
  // ZB-V: parts 1 and 2 both live on stage 1, so a message between them is a bug.
  const ScheduleSpec v{ScheduleKind::kZeroBubbleV, 2, 1, 2};
  absl::StatusOr<Schedule> zbv = BuildSchedule(v);
  ASSERT_TRUE(zbv.ok());
  (*zbv)[1].insert((*zbv)[1].begin() + 2, Action{Op::kSendAct, 0, 0, 1});
  ExpectInvalid(ValidateSchedule(*zbv, v),
                "stage 1 slot 2: 0SEND_F0>1 is a message to itself: the neighbouring part of part 1 is also on stage 1");
  const ScheduleSpec three{ScheduleKind::k1F1B, 3, 1};
  absl::StatusOr<Schedule> built = BuildSchedule(three);
  ASSERT_TRUE(built.ok());
  (*built)[0][1].peer = 2;  // 0SEND_F0>1 -> >2, skipping stage 1
  ExpectInvalid(ValidateSchedule(*built, three),
                "stage 0 slot 1: 0SEND_F0>2 names peer 2, but the neighbouring part of part 0 is on stage 1");
}

TEST(ValidateSchedule, SplitBackwardRules) {
  const ScheduleSpec one{ScheduleKind::kZeroBubbleH1, 1, 1};
  ExpectInvalid(ValidateSchedule({Parse("0F0 0I0")}, one), "missing W of micro-batch 0, chunk 0");
  ExpectInvalid(ValidateSchedule({Parse("0F0 0W0 0I0")}, one), "stage 0 slot 1: 0W0 runs before 0I0");
  ExpectInvalid(ValidateSchedule({Parse("0F0 0B0 0I0 0W0")}, one), "both B (slot 1) and I (slot 2)");
  ExpectInvalid(ValidateSchedule({Parse("0F0")}, one), "missing backward (B or I) of micro-batch 0");
  EXPECT_TRUE(ValidateSchedule({Parse("0F0 0I0 0W0")}, one).ok());
  EXPECT_TRUE(ValidateSchedule({Parse("0F0 0B0")}, one).ok());  // whole backward is fine too
}

TEST(ValidateSchedule, WrongShapes) {
  ExpectInvalid(ValidateSchedule(TwoStages(), {ScheduleKind::k1F1B, 3, 2}),
                "it has 2 stage lists, spec.stages = 3");
  ExpectInvalid(ValidateSchedule(TwoStages(), {ScheduleKind::k1F1B, 2, 1}),
                "stage 0 slot 2: 0F1 names micro-batch 1, outside 0..0");
  Schedule s = TwoStages();
  s[0][0].peer = 1;
  ExpectInvalid(ValidateSchedule(s, kTwo), "0F0 has peer 1; compute actions take no peer");
}

}  // namespace
}  // namespace baton
