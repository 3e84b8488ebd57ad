// Pins the planner's memory model (launcher/plan_memory.h) to what baton
// really allocates on the CPU: the heap bytes in use (glibc mallinfo2,
// small and mmap'd blocks) after building a Model and its AdamW state and
// running micro-batches through it, for every recompute policy, a whole
// model and pipeline slices with several micro-batches in flight; and the
// exact parameter counts of tensor-parallel slices; and that its stages are
// the engine's split (engine/stage_split.h), the job's explicit
// parallel.layers_per_stage included. Within 10 % is the issue's
// bar; the param counts and the split must match exactly.
#include <malloc.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/stage_split.h"
#include "gtest/gtest.h"
#include "launcher/plan_command.h"
#include "launcher/plan_memory.h"
#include "launcher/plan_profile.h"
#include "launcher/plan_time.h"
#include "launcher/train.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"

namespace baton {
namespace {

int64_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

Tensor Tokens(int64_t B, int64_t T, int vocab) {
  Tensor t = Tensor::Empty({B, T}, DType::kI32);
  for (int64_t i = 0; i < B * T; ++i) t.data<int32_t>()[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return t;
}

// examples/tiny.toml's model, untied so the head has a weight of its own.
ModelConfig Tiny(bool tied) {
  ModelConfig c;
  c.layers = 4;
  c.dim = 128;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 352;
  c.vocab_size = 258;
  c.tie_embeddings = tied;
  return c;
}

// Stands in for a tp group when only the shapes matter (nothing is summed).
class NoCollectives final : public TpCollectives {
 public:
  explicit NoCollectives(int size) : size_(size) {}
  int rank() const override { return 0; }
  int size() const override { return size_; }
  absl::Status AllReduceSum(Tensor&) override { return absl::OkStatus(); }
  absl::Status AllReduceMax(Tensor&) override { return absl::OkStatus(); }
  absl::Status AllGather(const Tensor&, Tensor&) override { return absl::OkStatus(); }
  absl::Status ReduceScatterSum(const Tensor&, Tensor&) override { return absl::OkStatus(); }

 private:
  int size_;
};

MemoryTarget Cpu() { return {Device::kCpu, DType::kF32, 0}; }

RecomputeConfig Policy(RecomputePolicy p) {
  RecomputeConfig rc;
  rc.policy = p;
  return rc;
}

// The whole model, one micro-batch at a time (pp = 1): what `baton train`
// holds after a step.
TEST(PlanMemory, WholeModelMatchesAllocatedBytesForEveryPolicy) {
  const ModelConfig cfg = Tiny(true);
  const int64_t B = 4, T = 128;
  for (RecomputePolicy p : {RecomputePolicy::kNone, RecomputePolicy::kSelective, RecomputePolicy::kFull,
                            RecomputePolicy::kEveryK}) {
    const RecomputeConfig rc = Policy(p);
    const int64_t before = HeapInUse();
    int64_t measured = 0;
    {
      absl::StatusOr<Model> m = Model::Create(cfg, DType::kF32);
      ASSERT_TRUE(m.ok()) << m.status();
      m->Init(1);
      AdamWOptimizer opt(OptimizerConfig{});
      opt.InitState(m->params());
      const Tensor tok = Tokens(B, T, cfg.vocab_size);
      m->ForwardBackward(tok, tok, 1.0, rc);
      measured = HeapInUse() - before - static_cast<int64_t>(tok.nbytes());
    }
    PlanLayout layout;
    layout.micro_batch = B;
    layout.recompute = rc;
    absl::StatusOr<MemoryBreakdown> pred = PredictMemory(cfg, layout, T, Cpu(), {1});
    ASSERT_TRUE(pred.ok()) << pred.status();
    const double err = std::abs(double(pred->total()) / measured - 1);
    std::printf("whole %-9s predicted %lld measured %lld (%+.1f %%)\n", RecomputeName(rc),
                static_cast<long long>(pred->total()), static_cast<long long>(measured),
                100.0 * (double(pred->total()) / measured - 1));
    EXPECT_LT(err, 0.10) << RecomputeName(rc) << ": predicted " << pred->total() << " measured " << measured;
    // Weights, grads and Adam moments are exact: 4 + 4 + 8 bytes per param.
    int64_t params = 0;
    {
      absl::StatusOr<Model> m = Model::Create(cfg, DType::kF32);
      params = m->NumParameters();
    }
    EXPECT_EQ(pred->weights, 4 * params);
    EXPECT_EQ(pred->optimizer, 8 * params);
  }
}

// Heap bytes a pipeline part's Model, its AdamW state and `in_flight`
// micro-batches (each in its own slot) hold, the engine's stage on the CPU
// without the executor's message buffers.
int64_t MeasuredPartBytes(const ModelConfig& cfg, const PartLayers& part, int64_t B, int64_t T, int in_flight) {
  const int64_t before = HeapInUse();
  absl::StatusOr<Model> m =
      Model::Create(cfg, DType::kF32, Device::kCpu, ModelSlice{part.first, part.last, part.embedding, part.head});
  if (!m.ok()) {
    ADD_FAILURE() << m.status();
    return 0;
  }
  m->Init(1);
  AdamWOptimizer opt(OptimizerConfig{});
  opt.InitState(m->params());
  const Tensor tok = Tokens(B, T, cfg.vocab_size);
  Tensor in = Tensor::Zeros({B * T, cfg.dim}, DType::kF32);
  Tensor out = Tensor::Zeros({B * T, cfg.dim}, DType::kF32);
  const int64_t io = static_cast<int64_t>(tok.nbytes() + in.nbytes() + out.nbytes());
  for (int s = 0; s < in_flight; ++s) {
    m->PartForward(s, tok, tok, part.embedding ? nullptr : &in, part.head ? nullptr : &out, 1.0, {});
  }
  return HeapInUse() - before - io;
}

// A pipeline slice with k micro-batches in flight (each in its own slot).
TEST(PlanMemory, PipelineSliceMatchesAllocatedBytesPerInFlightMicrobatch) {
  const ModelConfig cfg = Tiny(false);
  const int64_t B = 2, T = 128;
  PlanLayout layout;
  layout.pp = 2;
  layout.micro_batch = B;
  layout.microbatches = 4;
  const std::vector<PartLayers> parts = SplitParts(cfg, layout, T);
  for (int stage : {0, 1}) {
    for (int in_flight : {1, 3}) {
      const int64_t measured = MeasuredPartBytes(cfg, parts[stage], B, T, in_flight);
      std::vector<int> peaks(2, 1);
      peaks[stage] = in_flight;
      absl::StatusOr<std::vector<MemoryBreakdown>> pred = PredictStageMemory(cfg, layout, T, Cpu(), peaks);
      ASSERT_TRUE(pred.ok()) << pred.status();
      const MemoryBreakdown& b = (*pred)[stage];
      const int64_t predicted = b.total() - b.comm;  // no executor here: no message buffers
      std::printf("stage %d in flight %d predicted %lld measured %lld (%+.1f %%)\n", stage, in_flight,
                  static_cast<long long>(predicted), static_cast<long long>(measured),
                  100.0 * (double(predicted) / measured - 1));
      EXPECT_LT(std::abs(double(predicted) / measured - 1), 0.10)
          << "stage " << stage << " in flight " << in_flight << ": predicted " << predicted << " measured "
          << measured;
    }
  }
}

// Zero-bubble: a micro-batch between its I and its W holds copies of every
// linear layer's input and output gradient on top of its slot.
TEST(PlanMemory, DeferredWeightGradientsOfZeroBubbleAreCounted) {
  const ModelConfig cfg = Tiny(false);
  const int64_t B = 2, T = 128;
  PlanLayout layout;
  layout.pp = 2;
  layout.micro_batch = B;
  layout.schedule = ScheduleKind::kZeroBubbleH1;
  const PartLayers part = SplitParts(cfg, layout, T)[0];
  const int64_t before = HeapInUse();
  int64_t measured = 0;
  {
    absl::StatusOr<Model> m =
        Model::Create(cfg, DType::kF32, Device::kCpu, ModelSlice{part.first, part.last, true, false});
    ASSERT_TRUE(m.ok()) << m.status();
    m->Init(1);
    AdamWOptimizer opt(OptimizerConfig{});
    opt.InitState(m->params());
    const Tensor tok = Tokens(B, T, cfg.vocab_size);
    Tensor out = Tensor::Zeros({B * T, cfg.dim}, DType::kF32);
    Tensor dout = Tensor::Zeros({B * T, cfg.dim}, DType::kF32);
    const int64_t io = static_cast<int64_t>(tok.nbytes() + out.nbytes() + dout.nbytes());
    m->PartForward(0, tok, tok, nullptr, &out, 1.0, {});
    m->PartForward(1, tok, tok, nullptr, &out, 1.0, {});
    m->PartBackwardInput(0, &dout, nullptr);
    measured = HeapInUse() - before - io;
  }
  absl::StatusOr<std::vector<MemoryBreakdown>> pred = PredictStageMemory(cfg, layout, T, Cpu(), {2, 1}, {1, 1});
  ASSERT_TRUE(pred.ok()) << pred.status();
  const int64_t predicted = (*pred)[0].total() - (*pred)[0].comm;
  std::printf("zb-h1 stage 0, 2 in flight, 1 waiting for W: predicted %lld measured %lld (%+.1f %%)\n",
              static_cast<long long>(predicted), static_cast<long long>(measured),
              100.0 * (double(predicted) / measured - 1));
  EXPECT_LT(std::abs(double(predicted) / measured - 1), 0.10);
}

// Tensor-parallel slices hold exactly the elements the model says.
TEST(PlanMemory, ParamCountsOfTensorParallelSlicesAreExact) {
  for (bool tied : {true, false}) {
    ModelConfig cfg = Tiny(tied);
    cfg.qkv_bias = true;
    cfg.vocab_size = 260;  // divisible by tp = 2 and 4
    cfg.kv_heads = 4;
    for (int tp : {1, 2, 4}) {
      PlanLayout two;
      two.pp = 2;
      const std::vector<PartLayers> parts = SplitParts(cfg, two, 64);
      for (const PartLayers& part : parts) {
        ModelSlice slice{part.first, part.last, part.embedding, part.head};
        NoCollectives comm(tp);
        TensorParallel t{tp, 0, &comm, false};
        absl::StatusOr<Model> m = Model::Create(cfg, DType::kF32, Device::kCpu, slice, t);
        ASSERT_TRUE(m.ok()) << m.status();
        std::vector<int64_t> want;
        for (const Param& p : m->params()) want.push_back(p.value.numel());
        const bool copy = tied && part.head && !part.embedding;
        EXPECT_EQ(PartParamElements(cfg, part, copy, tp), want) << "tp " << tp << " tied " << tied;
      }
    }
  }
}

// ZeRO-1 shards Adam moments round-robin over params; more dp, less state.
TEST(PlanMemory, ZeroOneShardsOptimizerStateAndRecomputeShrinksActivations) {
  ModelConfig cfg = Tiny(false);
  cfg.layers = 8;
  PlanLayout l;
  l.dp = 4;
  l.micro_batch = 4;
  MemoryTarget gpu;
  absl::StatusOr<MemoryBreakdown> off = PredictMemory(cfg, l, 512, gpu, {1});
  l.zero = 1;
  absl::StatusOr<MemoryBreakdown> on = PredictMemory(cfg, l, 512, gpu, {1});
  ASSERT_TRUE(off.ok() && on.ok());
  EXPECT_LT(on->optimizer, off->optimizer / 3);
  EXPECT_EQ(on->weights, off->weights);
  EXPECT_EQ(off->weights, off->params * 6);  // f32 master + bf16 compute copy
  l.recompute.policy = RecomputePolicy::kFull;
  absl::StatusOr<MemoryBreakdown> full = PredictMemory(cfg, l, 512, gpu, {1});
  ASSERT_TRUE(full.ok());
  EXPECT_LT(full->activations, on->activations);
}

// The planner prices the stages the engine builds: per stage, the layers,
// the embedding and head placement (interleaved chunks, ZB-V's V that puts
// both on stage 0, tied copies) and the parameters held are those of
// engine/stage_split.h's cut, built as real Models. A planner with a split
// of its own would price another layout than `baton train` runs.
TEST(PlanMemory, StagesAreTheEnginesSplit) {
  ModelConfig head_heavy = Tiny(false);  // lm head ≈ 4.5 layers: the last stage gets fewer
  head_heavy.layers = 12;
  head_heavy.dim = 64;
  head_heavy.ffn_dim = 176;
  head_heavy.vocab_size = 4000;
  ModelConfig odd = Tiny(false);
  odd.layers = 7;
  ModelConfig eight = Tiny(true);
  eight.layers = 8;
  ModelConfig six = Tiny(true);
  six.layers = 6;
  struct Case {
    const char* name;
    ModelConfig model;
    int pp, v;
    ScheduleKind schedule;
  } cases[] = {
      {"whole model", Tiny(true), 1, 1, ScheduleKind::k1F1B},
      {"4 layers pp=2 tied", Tiny(true), 2, 1, ScheduleKind::k1F1B},
      {"7 layers pp=3", odd, 3, 1, ScheduleKind::k1F1B},
      {"8 layers pp=2 v=2 interleaved tied", eight, 2, 2, ScheduleKind::kInterleaved1F1B},
      {"6 layers pp=2 zb-v tied", six, 2, 2, ScheduleKind::kZeroBubbleV},
      {"head-heavy 12 layers pp=4", head_heavy, 4, 1, ScheduleKind::k1F1B},
  };
  const int64_t T = 128;
  for (const Case& c : cases) {
    PlanLayout layout;
    layout.pp = c.pp;
    layout.virtual_stages = c.v;
    layout.schedule = c.schedule;
    const std::vector<ModelSlice> engine = SplitLayers(c.model, layout.parts(), T);
    const std::vector<PartLayers> planner = SplitParts(c.model, layout, T);
    ASSERT_EQ(planner.size(), engine.size()) << c.name;
    for (size_t i = 0; i < engine.size(); ++i) {
      EXPECT_EQ(planner[i].first, engine[i].first_layer) << c.name << " part " << i;
      EXPECT_EQ(planner[i].last, engine[i].last_layer) << c.name << " part " << i;
      EXPECT_EQ(planner[i].embedding, engine[i].embedding) << c.name << " part " << i;
      EXPECT_EQ(planner[i].head, engine[i].head) << c.name << " part " << i;
    }
    absl::StatusOr<std::vector<MemoryBreakdown>> pred =
        PredictStageMemory(c.model, layout, T, Cpu(), std::vector<int>(c.pp, 1));
    ASSERT_TRUE(pred.ok()) << c.name << ": " << pred.status();
    std::vector<int> layers(c.pp, 0);
    for (int stage = 0; stage < c.pp; ++stage) {
      int64_t held = 0;  // the engine's stage: a Model per chunk
      for (int chunk = 0; chunk < c.v; ++chunk) {
        const ModelSlice& slice = engine[ModelPart(layout.spec(), stage, chunk)];
        layers[stage] += slice.last_layer - slice.first_layer;
        absl::StatusOr<Model> m = Model::Create(c.model, DType::kF32, Device::kCpu, slice);
        ASSERT_TRUE(m.ok()) << c.name << ": " << m.status();
        held += m->NumParameters();
      }
      EXPECT_EQ((*pred)[stage].params, held) << c.name << " stage " << stage;
    }
    std::printf("%-36s layers per stage:", c.name);
    for (int n : layers) std::printf(" %d", n);
    std::printf("\n");
    if (c.model.vocab_size == 4000) EXPECT_LT(layers.back(), layers.front()) << "the lm head counts as work";
  }
}

// A job with an explicit split (parallel.layers_per_stage, the knob of
// head-heavy models) is planned with that split: per stage the layers, the
// params and the bytes of the stages the engine builds for the same config
// (EngineConfigOf, then SplitLayers as engine/stage.cc calls it), which
// differ from the balanced plan's. A planner that ignored the key would
// price stages `baton train` never builds.
TEST(PlanMemory, ExplicitSplitIsTheEnginesForTheConfig) {
  absl::StatusOr<JobConfig> job =
      LoadJobConfig(std::string(BATON_SOURCE_DIR) + "/examples/tiny.toml",
                    {"parallel.pp=2", "parallel.layers_per_stage=[1, 3]", "model.tie_embeddings=false",
                     "train.micro_batch_size=2"});
  ASSERT_TRUE(job.ok()) << job.status();
  const ModelConfig& cfg = job->model;
  const int64_t B = job->train.micro_batch_size, T = job->train.seq_len;
  const EngineConfig e = EngineConfigOf(*job, Device::kCpu);
  const std::vector<ModelSlice> engine =
      SplitLayers(e.model, e.mesh.pp * e.pipeline.virtual_stages, e.seq_len, e.pipeline.layers_per_part);
  const PlanLayout layout = PlanLayoutOf(*job);
  EXPECT_NE(ToString(layout).find(" split=1+3"), std::string::npos) << ToString(layout);
  const std::vector<PartLayers> planner = SplitParts(cfg, layout, T);
  ASSERT_EQ(planner.size(), 2u);
  ASSERT_EQ(engine.size(), 2u);
  for (size_t i = 0; i < engine.size(); ++i) {
    EXPECT_EQ(planner[i].first, engine[i].first_layer) << "part " << i;
    EXPECT_EQ(planner[i].last, engine[i].last_layer) << "part " << i;
    EXPECT_EQ(planner[i].embedding, engine[i].embedding) << "part " << i;
    EXPECT_EQ(planner[i].head, engine[i].head) << "part " << i;
  }
  EXPECT_EQ(planner[0].last - planner[0].first, 1);
  EXPECT_EQ(planner[1].last - planner[1].first, 3);

  absl::StatusOr<std::vector<MemoryBreakdown>> pred = PredictStageMemory(cfg, layout, T, Cpu(), {1, 1});
  PlanLayout balanced = layout;
  balanced.layers_per_part.clear();
  absl::StatusOr<std::vector<MemoryBreakdown>> even = PredictStageMemory(cfg, balanced, T, Cpu(), {1, 1});
  ASSERT_TRUE(pred.ok()) << pred.status();
  ASSERT_TRUE(even.ok()) << even.status();
  EXPECT_EQ(SplitParts(cfg, balanced, T)[0].last, 2);  // tiny's balanced cut is 2 + 2
  for (int stage = 0; stage < 2; ++stage) {
    absl::StatusOr<Model> m = Model::Create(cfg, DType::kF32, Device::kCpu, engine[stage]);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ((*pred)[stage].params, m->NumParameters()) << "stage " << stage;
    const int64_t measured = MeasuredPartBytes(cfg, planner[stage], B, T, 1);
    const int64_t predicted = (*pred)[stage].total() - (*pred)[stage].comm;
    std::printf("split 1+3 stage %d predicted %lld measured %lld (%+.1f %%), balanced plan %lld\n", stage,
                static_cast<long long>(predicted), static_cast<long long>(measured),
                100.0 * (double(predicted) / measured - 1), static_cast<long long>((*even)[stage].total()));
    EXPECT_LT(std::abs(double(predicted) / measured - 1), 0.10) << "stage " << stage;
  }
  EXPECT_LT((*pred)[0].params, (*even)[0].params);
  EXPECT_GT((*pred)[1].params, (*even)[1].params);
  EXPECT_LT((*pred)[0].total(), (*even)[0].total());
  EXPECT_GT((*pred)[1].total(), (*even)[1].total());

  // Time: the slowest part now holds 3 layers and the head.
  const HardwareProfile hw = *BuiltinProfile("cpu-dev");
  absl::StatusOr<StepPrediction> slow = PredictStep(cfg, layout, T, hw, 2);
  absl::StatusOr<StepPrediction> fast = PredictStep(cfg, balanced, T, hw, 2);
  ASSERT_TRUE(slow.ok() && fast.ok());
  EXPECT_GT(slow->forward, fast->forward);
  EXPECT_GT(slow->step, fast->step);
}

// A split the engine would refuse is refused, with its reason, never priced.
TEST(PlanMemory, RefusesASplitTheEngineRefuses) {
  PlanLayout l;
  l.pp = 2;
  l.layers_per_part = {1, 2, 1};
  absl::StatusOr<std::vector<MemoryBreakdown>> pred = PredictStageMemory(Tiny(true), l, 64, Cpu(), {1, 1});
  ASSERT_FALSE(pred.ok());
  EXPECT_EQ(pred.status().message(),
            "parallel.layers_per_stage has 3 entries, but pp=2 × virtual_stages=1 = 2 model parts");
  l.layers_per_part = {1, 2};
  EXPECT_EQ(CheckSplit(Tiny(true), l).message(), "parallel.layers_per_stage sums to 3 layers, but model.layers=4");
  l.layers_per_part = {0, 4};
  EXPECT_EQ(CheckSplit(Tiny(true), l).message(), "parallel.layers_per_stage[0]=0 must be >= 1");
  l.layers_per_part = {3, 1};
  EXPECT_TRUE(CheckSplit(Tiny(true), l).ok());
}

TEST(PlanMemory, RejectsMorePartsThanLayers) {
  PlanLayout l;
  l.pp = 8;
  EXPECT_FALSE(PredictMemory(Tiny(true), l, 64, Cpu(), std::vector<int>(8, 1)).ok());
}

}  // namespace
}  // namespace baton
