// Multi-rank tests of the pipeline executor (pp = world size): a toy model
// whose part k computes y = a_k·x + b_k elementwise, with loss Σ y² per
// micro-batch, runs under every schedule kind and several micro-batch
// counts; each rank's accumulated gradients (da_k, db_k) and the losses
// must equal a single-process run of the same model exactly. The
// parameters are powers of two and the inputs short dyadic fractions, so
// every product and sum is exact in f64 and any order of accumulation
// gives the same bits: a difference is a routing bug, not rounding.
// Also: an invalid schedule (a dropped receive) is refused before anything
// runs, buffers are recycled across steps, the trace gathers one compute
// event per action per rank, and the same pipeline runs over UCX. The
// actions inference and distillation use: a forward-only schedule gives the
// reference losses and frees every buffer, and the aux forward runs right
// before each F. A one-stage schedule over a group of one (the pp = 1
// training path) gives the reference gradients, and a failing action is
// reported with its rank, stage and action.
// Run under mpiexec -n {2,4} (tests/CMakeLists.txt).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "parallel/pipeline_executor.h"
#include "parallel/trace.h"
#include "parallel/ucx_p2p.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

constexpr int kWidth = 5;  // elements per activation

int WorldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// ---- the toy model ----

// Powers of two whose running products stay within [1/2, 2]: exact products.
double ParamA(int part) {
  static constexpr double kA[] = {2.0, 0.5, -1.0, 2.0, -0.5, 1.0, -2.0, 0.5};
  return kA[part % 8];
}
double ParamB(int part) { return 0.0625 * (part + 1) * (part % 2 == 0 ? 1 : -1); }
double InputOf(int mb, int i) { return 0.125 * (mb + 1) - 0.25 * i; }

struct Grads {
  std::map<int, double> da, db;  // [part]
  std::map<int, double> loss;    // [micro-batch], on the stage holding the last part
};

// The whole model in one process, micro-batch by micro-batch.
Grads Reference(const ScheduleSpec& spec) {
  const int parts = NumParts(spec);
  Grads g;
  for (int mb = 0; mb < spec.microbatches; ++mb) {
    std::vector<std::vector<double>> xs(parts);
    std::vector<double> x(kWidth);
    for (int i = 0; i < kWidth; ++i) x[i] = InputOf(mb, i);
    for (int k = 0; k < parts; ++k) {
      xs[k] = x;
      for (double& v : x) v = ParamA(k) * v + ParamB(k);
    }
    double loss = 0;
    std::vector<double> dy(kWidth);
    for (int i = 0; i < kWidth; ++i) {
      loss += x[i] * x[i];
      dy[i] = 2 * x[i];
    }
    g.loss[mb] = loss;
    for (int k = parts - 1; k >= 0; --k) {
      for (int i = 0; i < kWidth; ++i) {
        g.da[k] += dy[i] * xs[k][i];
        g.db[k] += dy[i];
        dy[i] *= ParamA(k);
      }
    }
  }
  return g;
}

// One stage of the toy model. It keeps handles to the executor's input and
// grad_output buffers instead of copies: the executor promises they hold
// until the backward is complete, and a broken promise shows up as wrong
// gradients.
class ToyStage final : public StageWork {
 public:
  ToyStage(const ScheduleSpec& spec, int stage) : spec_(spec), stage_(stage) {}

  Shape InputShape(int mb, int chunk) override { return {kWidth}; }
  Shape OutputShape(int mb, int chunk) override { return {kWidth}; }
  DType activation_dtype() const override { return DType::kF64; }

  absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) override {
    ++calls_;
    const int k = ModelPart(spec_, stage_, chunk);
    if ((input == nullptr) != (k == 0) || (output == nullptr) != (k == NumParts(spec_) - 1)) {
      return absl::InternalError(absl::StrCat("F part ", k, ": wrong null pointers"));
    }
    Tensor x = Tensor::Empty({kWidth}, DType::kF64);
    if (input != nullptr) {
      x = *input;  // a handle: the executor keeps it alive and unchanged
    } else {
      for (int i = 0; i < kWidth; ++i) x.data<double>()[i] = InputOf(mb, i);
    }
    Tensor y = output != nullptr ? *output : Tensor::Empty({kWidth}, DType::kF64);
    for (int i = 0; i < kWidth; ++i) y.data<double>()[i] = ParamA(k) * x.data<double>()[i] + ParamB(k);
    stash_x_[{mb, chunk}] = x;
    if (output == nullptr) {
      double loss = 0;
      for (int i = 0; i < kWidth; ++i) loss += y.data<double>()[i] * y.data<double>()[i];
      grads_.loss[mb] = loss;
      stash_y_[{mb, chunk}] = y;
    }
    return absl::OkStatus();
  }

  absl::Status Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override {
    BATON_RETURN_IF_ERROR(BackwardInput(mb, chunk, grad_output, grad_input));
    return BackwardWeight(mb, chunk);
  }

  absl::Status BackwardInput(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) override {
    ++calls_;
    const int k = ModelPart(spec_, stage_, chunk);
    if ((grad_output == nullptr) != (k == NumParts(spec_) - 1) || (grad_input == nullptr) != (k == 0)) {
      return absl::InternalError(absl::StrCat("B/I part ", k, ": wrong null pointers"));
    }
    if (!stash_x_.contains({mb, chunk})) return absl::InternalError("backward before forward");
    Tensor dy;
    if (grad_output != nullptr) {
      dy = *grad_output;  // a handle: valid until W
    } else {
      dy = Tensor::Empty({kWidth}, DType::kF64);
      const Tensor& y = stash_y_.at({mb, chunk});
      for (int i = 0; i < kWidth; ++i) dy.data<double>()[i] = 2 * y.data<double>()[i];
    }
    if (grad_input != nullptr) {
      for (int i = 0; i < kWidth; ++i) grad_input->data<double>()[i] = ParamA(k) * dy.data<double>()[i];
    }
    stash_dy_[{mb, chunk}] = dy;
    return absl::OkStatus();
  }

  absl::Status BackwardWeight(int mb, int chunk) override {
    ++calls_;
    const int k = ModelPart(spec_, stage_, chunk);
    const Tensor& x = stash_x_.at({mb, chunk});
    const Tensor& dy = stash_dy_.at({mb, chunk});
    for (int i = 0; i < kWidth; ++i) {
      grads_.da[k] += dy.data<double>()[i] * x.data<double>()[i];
      grads_.db[k] += dy.data<double>()[i];
    }
    stash_x_.erase({mb, chunk});
    stash_dy_.erase({mb, chunk});
    stash_y_.erase({mb, chunk});
    return absl::OkStatus();
  }

  const Grads& grads() const { return grads_; }
  void ZeroGrads() { grads_ = Grads{}; }
  int calls() const { return calls_; }

 private:
  ScheduleSpec spec_;
  int stage_;
  Grads grads_;
  int calls_ = 0;
  std::map<std::pair<int, int>, Tensor> stash_x_, stash_y_, stash_dy_;  // [(mb, chunk)]
};

// Mismatches between this stage's gradients and losses and the reference,
// one per line; empty when they agree exactly.
std::string CompareWithReference(const ScheduleSpec& spec, int stage, const Grads& got, const Grads& ref) {
  std::string out;
  for (int c = 0; c < spec.virtual_stages; ++c) {
    const int k = ModelPart(spec, stage, c);
    for (const auto& [name, g, r] : {std::tuple{"da", &got.da, &ref.da}, std::tuple{"db", &got.db, &ref.db}}) {
      const double want = r->at(k);
      const double have = g->contains(k) ? g->at(k) : NAN;
      if (have != want) absl::StrAppend(&out, name, "[part ", k, "] = ", have, ", want ", want, "\n");
    }
    if (k == NumParts(spec) - 1) {
      for (const auto& [mb, want] : ref.loss) {
        const double have = got.loss.contains(mb) ? got.loss.at(mb) : NAN;
        if (have != want) absl::StrAppend(&out, "loss[mb ", mb, "] = ", have, ", want ", want, "\n");
      }
    }
  }
  return out;
}

TEST(ToyReferenceTest, ComparisonCatchesOneUlp) {
  ScheduleSpec spec{ScheduleKind::k1F1B, 2, 3, 1};
  const Grads ref = Reference(spec);
  Grads got = ref;
  EXPECT_EQ(CompareWithReference(spec, 1, got, ref), "");
  got.da[1] = std::nextafter(got.da[1], 1e300);
  EXPECT_THAT(CompareWithReference(spec, 1, got, ref), HasSubstr("da[part 1]"));
  got = ref;
  got.loss[2] = std::nextafter(got.loss[2], -1e300);
  EXPECT_THAT(CompareWithReference(spec, 1, got, ref), HasSubstr("loss[mb 2]"));
  EXPECT_EQ(CompareWithReference(spec, 0, got, ref), "");  // stage 0 holds no loss
}

// ---- fixtures ----

// The world as one pipeline (pp = world size), over MPI.
class PipelineExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<Mesh> mesh = Mesh::Create(MeshShape{1, WorldSize(), 1}, WorldSize(), WorldRank());
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = std::make_unique<Mesh>(*mesh);
    absl::StatusOr<MeshComms> comms = CreateMpiMeshComms(*mesh_);
    ASSERT_TRUE(comms.ok()) << comms.status();
    comms_ = std::make_unique<MeshComms>(*std::move(comms));
  }
  static void TearDownTestSuite() {
    comms_.reset();
    mesh_.reset();
  }
  static std::unique_ptr<Mesh> mesh_;
  static std::unique_ptr<MeshComms> comms_;
};
std::unique_ptr<Mesh> PipelineExecutorTest::mesh_;
std::unique_ptr<MeshComms> PipelineExecutorTest::comms_;

// Runs `steps` steps of `spec` on this rank's stage and checks every step's
// gradients against the reference; returns the executor's allocations
// after each step.
std::vector<int64_t> RunAndCheck(const ScheduleSpec& spec, Communicator& pp, int steps,
                                 PipelineExecutorOptions options = {}) {
  std::vector<int64_t> allocated;
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  EXPECT_TRUE(schedule.ok()) << schedule.status();
  if (!schedule.ok()) return allocated;
  const int stage = pp.rank();
  const Grads ref = Reference(spec);
  ToyStage work(spec, stage);
  PipelineExecutor executor(*schedule, spec, stage, pp, nullptr, options);
  for (int step = 0; step < steps; ++step) {
    work.ZeroGrads();
    const absl::Status st = executor.RunStep(work);
    EXPECT_TRUE(st.ok()) << ToString(spec) << " step " << step << ": " << st;
    EXPECT_EQ(CompareWithReference(spec, stage, work.grads(), ref), "")
        << ToString(spec) << " stage " << stage << " step " << step;
    allocated.push_back(executor.buffers_allocated());
  }
  return allocated;
}

// Micro-batch counts per kind: 1, fewer than, equal to and more than p,
// where the generator allows them (interleaved needs m % p == 0).
std::vector<ScheduleSpec> AllSpecs(int p) {
  std::vector<ScheduleSpec> specs;
  auto add = [&](ScheduleKind kind, int v, std::vector<int> ms) {
    for (int m : ms) specs.push_back(ScheduleSpec{kind, p, m, v});
  };
  add(ScheduleKind::kGPipe, 1, {1, 3, 8});
  add(ScheduleKind::kGPipe, 2, {1, 4});
  add(ScheduleKind::k1F1B, 1, {1, 2, 5, 8});
  add(ScheduleKind::kInterleaved1F1B, 2, {p, 2 * p});
  add(ScheduleKind::kZeroBubbleH1, 1, {1, 3, 8});
  add(ScheduleKind::kZeroBubbleV, 2, {1, 3, 8});
  return specs;
}

// ---- tests ----

TEST_F(PipelineExecutorTest, EverySchedulesGradientsEqualTheSingleProcessModel) {
  for (const ScheduleSpec& spec : AllSpecs(WorldSize())) {
    SCOPED_TRACE(ToString(spec));
    RunAndCheck(spec, *comms_->pp, 1);
  }
}

TEST_F(PipelineExecutorTest, NoLookaheadGivesTheSameGradients) {
  PipelineExecutorOptions options;
  options.recv_lookahead = 0;
  RunAndCheck(ScheduleSpec{ScheduleKind::k1F1B, WorldSize(), 5, 1}, *comms_->pp, 1, options);
  RunAndCheck(ScheduleSpec{ScheduleKind::kZeroBubbleV, WorldSize(), 4, 2}, *comms_->pp, 1, options);
}

TEST_F(PipelineExecutorTest, LaterStepsAllocateNothing) {
  for (const ScheduleSpec& spec : {ScheduleSpec{ScheduleKind::kInterleaved1F1B, WorldSize(), 2 * WorldSize(), 2},
                                   ScheduleSpec{ScheduleKind::kZeroBubbleH1, WorldSize(), 6, 1}}) {
    SCOPED_TRACE(ToString(spec));
    const std::vector<int64_t> allocated = RunAndCheck(spec, *comms_->pp, 3);
    ASSERT_EQ(allocated.size(), 3u);
    EXPECT_GT(allocated[0], 0);
    EXPECT_EQ(allocated[1], allocated[0]);
    EXPECT_EQ(allocated[2], allocated[0]);
  }
}

TEST_F(PipelineExecutorTest, DroppedReceiveIsRefusedBeforeAnythingRuns) {
  const ScheduleSpec spec{ScheduleKind::k1F1B, WorldSize(), 4, 1};
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  std::vector<Action>& last = (*schedule)[WorldSize() - 1];
  auto it = std::find_if(last.begin(), last.end(), [](const Action& a) { return a.op == Op::kRecvAct; });
  ASSERT_NE(it, last.end());
  last.erase(it);

  ToyStage work(spec, comms_->pp->rank());
  PipelineExecutor executor(*schedule, spec, comms_->pp->rank(), *comms_->pp);
  for (int attempt = 0; attempt < 2; ++attempt) {  // the verdict sticks
    const absl::Status st = executor.RunStep(work);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("has no matching"));
  }
  EXPECT_EQ(work.calls(), 0);
}

TEST_F(PipelineExecutorTest, CommunicatorOfTheWrongSizeIsRefused) {
  const ScheduleSpec spec{ScheduleKind::k1F1B, WorldSize() + 1, 2, 1};
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  ToyStage work(spec, comms_->pp->rank());
  PipelineExecutor executor(*schedule, spec, comms_->pp->rank(), *comms_->pp);
  const absl::Status st = executor.RunStep(work);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("pp communicator"));
  EXPECT_EQ(work.calls(), 0);
}

TEST_F(PipelineExecutorTest, TooManyMessagesForTheTagsIsRefused) {
  const ScheduleSpec spec{ScheduleKind::kGPipe, WorldSize(), 16385 / WorldSize() + 1, 1};
  ToyStage work(spec, comms_->pp->rank());
  // The schedule is never looked at: the tag check comes first.
  PipelineExecutor executor(Schedule(WorldSize()), spec, comms_->pp->rank(), *comms_->pp);
  const absl::Status st = executor.RunStep(work);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("do not fit in the 32768 tags"));

  EXPECT_EQ(*PipelineMessageTag(ScheduleSpec{ScheduleKind::k1F1B, 4, 8, 1}, MessageKey{true, 7, 3}),
            (7 * 4 + 3) * 2 + 1);
  EXPECT_EQ(*PipelineMessageTag(ScheduleSpec{ScheduleKind::k1F1B, 4, 8, 1}, MessageKey{false, 0, 0}), 0);
  EXPECT_EQ(PipelineMessageTag(ScheduleSpec{ScheduleKind::k1F1B, 4, 8, 1}, MessageKey{false, 8, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PipelineExecutorTest, TraceHasOneComputeEventPerActionPerRank) {
  const ScheduleSpec spec{ScheduleKind::kZeroBubbleH1, WorldSize(), 4, 1};
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  TraceRecorder trace(mesh_->rank(), TraceRowName(*mesh_));
  ASSERT_TRUE(trace.SyncOrigin(*comms_->world).ok());
  ToyStage work(spec, comms_->pp->rank());
  PipelineExecutor executor(*schedule, spec, comms_->pp->rank(), *comms_->pp, &trace);
  // EXPECT, not ASSERT, until the gather: every rank must reach the collective.
  const absl::Status run = executor.RunStep(work);
  EXPECT_TRUE(run.ok()) << run;

  const std::string path = absl::StrCat(::testing::TempDir(), "pipeline_trace_np", WorldSize(), ".json");
  const absl::Status st = GatherChromeTrace(*comms_->world, trace, path);
  ASSERT_TRUE(st.ok()) << st;
  if (WorldRank() != 0) return;

  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(text.str());  // throws (fails the test) if invalid
  std::map<int, std::vector<std::string>> compute;               // [tid] names in time order
  std::map<int, std::string> row_names;
  std::map<int, double> last_end;
  for (const nlohmann::json& e : doc.at("traceEvents")) {
    const int tid = e.at("tid");
    if (e.at("ph") == "M" && e.at("name") == "thread_name") row_names[tid] = e.at("args").at("name");
    if (e.at("ph") != "X") continue;
    EXPECT_EQ(e.at("pid"), 0);
    EXPECT_GE(e.at("dur").get<double>(), 0.0);
    if (e.at("cat") == "compute") {
      EXPECT_GE(e.at("ts").get<double>(), last_end[tid]) << "compute events overlap on rank " << tid;
      last_end[tid] = e.at("ts").get<double>() + e.at("dur").get<double>();
      compute[tid].push_back(e.at("name"));
    }
  }
  ASSERT_EQ(static_cast<int>(compute.size()), WorldSize());
  for (int r = 0; r < WorldSize(); ++r) {
    std::vector<std::string> want;
    for (const Action& a : (*schedule)[r]) {
      if (IsCompute(a.op)) want.push_back(absl::StrCat(OpName(a.op), a.microbatch, ".", a.chunk));
    }
    EXPECT_EQ(compute[r], want) << "rank " << r;
    EXPECT_EQ(row_names[r], absl::StrCat("rank ", r, " (dp 0, pp ", r, ", tp 0)"));
  }
  std::remove(path.c_str());
}

// Records ForwardAux and Forward calls around a ToyStage, and fails one
// chosen action (F or A of one micro-batch) when asked.
class RecordingStage final : public StageWork {
 public:
  RecordingStage(const ScheduleSpec& spec, int stage) : toy_(spec, stage) {}
  Shape InputShape(int mb, int chunk) override { return toy_.InputShape(mb, chunk); }
  Shape OutputShape(int mb, int chunk) override { return toy_.OutputShape(mb, chunk); }
  DType activation_dtype() const override { return toy_.activation_dtype(); }
  bool HasAuxForward() const override { return true; }
  absl::Status ForwardAux(int mb, int chunk) override {
    events_.push_back(absl::StrCat("A", mb, ".", chunk));
    if (fail_aux_mb_ == mb) return absl::InternalError("teacher out of memory");
    return absl::OkStatus();
  }
  absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) override {
    events_.push_back(absl::StrCat("F", mb, ".", chunk));
    if (fail_forward_mb_ == mb) return absl::InternalError("injected failure");
    return toy_.Forward(mb, chunk, input, output);
  }
  absl::Status Backward(int mb, int chunk, const Tensor* go, Tensor* gi) override {
    ++backwards_;
    return toy_.Backward(mb, chunk, go, gi);
  }
  const ToyStage& toy() const { return toy_; }
  const std::vector<std::string>& events() const { return events_; }
  int backwards() const { return backwards_; }
  int fail_forward_mb_ = -1, fail_aux_mb_ = -1;

 private:
  ToyStage toy_;
  std::vector<std::string> events_;
  int backwards_ = 0;
};

TEST_F(PipelineExecutorTest, ForwardOnlyGivesTheReferenceLossesAndFreesEveryBuffer) {
  const int p = WorldSize();
  for (ScheduleSpec spec : {ScheduleSpec{ScheduleKind::k1F1B, p, 3, 1}, ScheduleSpec{ScheduleKind::kGPipe, p, 5, 2},
                            ScheduleSpec{ScheduleKind::kInterleaved1F1B, p, 3, 2},
                            ScheduleSpec{ScheduleKind::kZeroBubbleV, p, 4, 2}}) {
    spec.forward_only = true;
    SCOPED_TRACE(ToString(spec));
    absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
    ASSERT_TRUE(schedule.ok()) << schedule.status();
    const int stage = comms_->pp->rank();
    RecordingStage work(spec, stage);
    PipelineExecutor executor(*schedule, spec, stage, *comms_->pp);
    for (int step = 0; step < 2; ++step) {
      const absl::Status st = executor.RunStep(work);  // "buffers still held" would fail it
      EXPECT_TRUE(st.ok()) << st;
    }
    EXPECT_EQ(work.backwards(), 0);
    // Each forward's input went back to the pool: a step needs no more buffers than the first did.
    const int64_t allocated = executor.buffers_allocated();
    EXPECT_TRUE(executor.RunStep(work).ok());
    EXPECT_EQ(executor.buffers_allocated(), allocated);
    const Grads ref = Reference(spec);
    const int last = NumParts(spec) - 1;
    if (LocatePart(spec, last).stage == stage) {
      for (const auto& [mb, want] : ref.loss) EXPECT_EQ(work.toy().grads().loss.at(mb), want) << "mb " << mb;
    }
  }
}

TEST_F(PipelineExecutorTest, AuxForwardRunsJustBeforeEachForward) {
  const ScheduleSpec spec{ScheduleKind::k1F1B, WorldSize(), 4, 1};
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  RecordingStage work(spec, comms_->pp->rank());
  PipelineExecutor executor(*schedule, spec, comms_->pp->rank(), *comms_->pp);
  ASSERT_TRUE(executor.RunStep(work).ok());
  const std::vector<std::string>& ev = work.events();
  ASSERT_EQ(ev.size(), 2u * spec.microbatches);
  for (size_t i = 0; i < ev.size(); i += 2) {
    EXPECT_EQ(ev[i][0], 'A') << i;
    EXPECT_EQ(ev[i].substr(1), ev[i + 1].substr(1)) << "the aux forward of another micro-batch";
  }
  // The student's gradients are untouched by the aux forward.
  EXPECT_EQ(CompareWithReference(spec, comms_->pp->rank(), work.toy().grads(), Reference(spec)), "");
}

// pp = 1: a one-stage schedule over a group of one process, as the trainer runs it.
TEST(OneStageTest, OneStageScheduleGivesTheReferenceGradients) {
  std::unique_ptr<Communicator> self = MakeSelfCommunicator();
  const std::vector<int64_t> allocated = RunAndCheck(ScheduleSpec{ScheduleKind::k1F1B, 1, 5, 1}, *self, 2);
  ASSERT_EQ(allocated.size(), 2u);
  EXPECT_EQ(allocated[1], 0);  // nothing crosses a part boundary: no buffer at all
}

TEST(OneStageTest, FailuresNameTheRankStageAndAction) {
  std::unique_ptr<Communicator> self = MakeSelfCommunicator();
  const ScheduleSpec spec{ScheduleKind::k1F1B, 1, 4, 1};
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  {
    RecordingStage work(spec, 0);
    work.fail_forward_mb_ = 2;
    PipelineExecutor executor(*schedule, spec, 0, *self, nullptr, {}, /*rank=*/3);
    const absl::Status st = executor.RunStep(work);
    EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
    EXPECT_EQ(st.message(), "rank 3, pipeline stage 0, 0F2: injected failure");
  }
  {
    RecordingStage work(spec, 0);
    work.fail_aux_mb_ = 1;
    PipelineExecutor executor(*schedule, spec, 0, *self, nullptr, {}, /*rank=*/3);
    const absl::Status st = executor.RunStep(work);
    EXPECT_EQ(st.message(), "rank 3, pipeline stage 0, 0A1: teacher out of memory");
  }
}

// The same pipeline with its point-to-point over UCX.
TEST(PipelineExecutorUcxTest, OneFOneBAndZeroBubbleVOverUcx) {
  absl::StatusOr<Mesh> mesh = Mesh::Create(MeshShape{1, WorldSize(), 1}, WorldSize(), WorldRank());
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  absl::StatusOr<MeshComms> comms = CreateMeshCommsWithUcxPipeline(*mesh);
  ASSERT_TRUE(comms.ok()) << comms.status();
  ASSERT_STREQ(comms->pp->backend(), "ucx");
  RunAndCheck(ScheduleSpec{ScheduleKind::k1F1B, WorldSize(), 6, 1}, *comms->pp, 2);
  RunAndCheck(ScheduleSpec{ScheduleKind::kZeroBubbleV, WorldSize(), 3, 2}, *comms->pp, 1);
  EXPECT_TRUE(comms->Close().ok());
}

}  // namespace
}  // namespace baton
