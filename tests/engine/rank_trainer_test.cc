// The engine in one process: RankTrainer with pp = 1 runs the whole model
// as a one-stage schedule through the PipelineExecutor, and must give the
// same bits (losses, grad norms, weights) as the plain loop over
// Model::ForwardBackward + ClipGradNorm + AdamW that defines training; the
// grad-ready hooks (dp bucket overlap) fire during that path's backward; and
// EngineConfig picks the schedules the engine runs.
#include "engine/rank_trainer.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/rng.h"

namespace baton {
namespace {

EngineConfig Config(int microbatches) {
  EngineConfig c;
  c.model.layers = 2;
  c.model.dim = 16;
  c.model.heads = 4;
  c.model.kv_heads = 2;
  c.model.ffn_dim = 24;
  c.model.vocab_size = 11;
  c.model.init_std = 0.3f;
  c.micro_batch_size = 2;
  c.seq_len = 5;
  c.microbatches = microbatches;
  c.seed = 7;
  c.optimizer.grad_clip = 0.5f;  // small enough to clip
  return c;
}

void Batches(const EngineConfig& c, int step, std::vector<Tensor>* tokens, std::vector<Tensor>* targets) {
  tokens->clear();
  targets->clear();
  for (int m = 0; m < c.microbatches; ++m) {
    Tensor t = Tensor::Empty({c.micro_batch_size, c.seq_len}, DType::kI32);
    Tensor y = Tensor::Empty({c.micro_batch_size, c.seq_len}, DType::kI32);
    for (int64_t i = 0; i < t.numel(); ++i) {
      t.data<int32_t>()[i] = static_cast<int32_t>((i * 7 + m * 3 + step * 5) % c.model.vocab_size);
      y.data<int32_t>()[i] = static_cast<int32_t>((i * 5 + m + step) % c.model.vocab_size);
    }
    tokens->push_back(t);
    targets->push_back(y);
  }
}

TEST(RankTrainer, OneStageScheduleGivesTheBitsOfThePlainLoop) {
  const EngineConfig c = Config(3);
  absl::StatusOr<std::unique_ptr<RankTrainer>> trainer = RankTrainer::Create(c, nullptr, nullptr);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  EXPECT_EQ((*trainer)->stage().spec().stages, 1);
  absl::StatusOr<Model> ref = Model::Create(c.model, DType::kF32);
  ASSERT_TRUE(ref.ok()) << ref.status();
  ref->Init(static_cast<uint64_t>(c.seed));
  AdamWOptimizer opt(c.optimizer);
  std::vector<Tensor> tokens, targets;
  const double scale = 1.0 / (c.microbatches * c.micro_batch_size * c.seq_len);
  for (int step = 0; step < 3; ++step) {
    Batches(c, step, &tokens, &targets);
    absl::StatusOr<double> loss = (*trainer)->ForwardBackward(tokens, targets, scale);
    ASSERT_TRUE(loss.ok()) << loss.status();
    absl::StatusOr<double> norm = (*trainer)->ClipGradNorm(c.optimizer.grad_clip);
    ASSERT_TRUE(norm.ok()) << norm.status();
    ASSERT_TRUE((*trainer)->OptimizerStep(1e-2f).ok());

    ref->ZeroGrad();
    double want = 0;
    for (int m = 0; m < c.microbatches; ++m) want += ref->ForwardBackward(tokens[m], targets[m], scale, c.recompute);
    const double want_norm = ClipGradNorm(ref->params(), c.optimizer.grad_clip).value();
    ASSERT_TRUE(opt.Step(ref->params(), 1e-2f).ok());
    EXPECT_EQ(*loss, want) << "step " << step;
    EXPECT_EQ(*norm, want_norm) << "step " << step;
  }
  const std::vector<Param>& got = (*trainer)->models()[0]->params();
  ASSERT_EQ(got.size(), ref->params().size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(std::memcmp(got[i].value.raw(), ref->params()[i].value.raw(), got[i].value.nbytes()), 0)
        << got[i].name;
  }
}

TEST(RankTrainer, GradReadyHooksFireDuringTheOneStageBackward) {
  const EngineConfig c = Config(2);
  absl::StatusOr<std::unique_ptr<RankTrainer>> trainer = RankTrainer::Create(c, nullptr, nullptr);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  Model& m = *(*trainer)->models()[0];
  std::vector<int> ready(m.params().size(), 0);
  m.SetGradReadyHook([&](int first, int end) {
    for (int i = first; i < end; ++i) ++ready[i];
  });
  std::vector<Tensor> tokens, targets;
  Batches(c, 0, &tokens, &targets);
  ASSERT_TRUE((*trainer)->ForwardBackward(tokens, targets, 0.1).ok());
  for (size_t i = 0; i < ready.size(); ++i) EXPECT_EQ(ready[i], c.microbatches) << m.params()[i].name;
}

TEST(EngineConfig, OneStageTrainingAndForwardOnlyValidation) {
  EngineConfig c = Config(4);
  c.pipeline.schedule = ScheduleKind::kGPipe;  // ignored with pp = 1: one micro-batch in flight
  EXPECT_EQ(ToString(c.TrainSchedule()), "1f1b(pp=1, m=4, v=1)");
  EXPECT_EQ(ToString(c.EvalSchedule(3)), "forward 1f1b(pp=1, m=3, v=1)");
  c.mesh.pp = 4;
  c.pipeline.schedule = ScheduleKind::kInterleaved1F1B;
  c.pipeline.virtual_stages = 2;
  EXPECT_EQ(ToString(c.TrainSchedule()), "interleaved(pp=4, m=4, v=2)");
  EXPECT_EQ(ToString(c.EvalSchedule(2)), "forward interleaved(pp=4, m=2, v=2)");
}

}  // namespace
}  // namespace baton
