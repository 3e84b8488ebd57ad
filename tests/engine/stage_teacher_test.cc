// The online teacher's memory (engine/stage_teacher.h): it is built from
// forward-only Models, so it holds its weights and nothing else: no
// gradient buffers, no optimizer state (the trainer's checkpoint shards,
// which carry every Adam moment it keeps, name only the student's params),
// and on the CPU exactly 4 bytes per teacher parameter, the count computed
// here from the config's formulas, half of what a training Model of it
// holds. A distillation step still runs with it. (On CUDA the same teacher
// holds 2 bytes per parameter with bf16 compute: distill_gpu_test.)
#include <string>
#include <vector>

#include "engine/rank_trainer.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

ModelConfig Llama(int layers, int dim, int ffn) {
  ModelConfig m;
  m.layers = layers;
  m.dim = dim;
  m.heads = 4;
  m.kv_heads = 2;
  m.ffn_dim = ffn;
  m.vocab_size = 11;
  m.tie_embeddings = false;
  m.init_std = 0.3f;
  return m;
}

// Parameters of the whole untied model, from the shapes of runtime/model.cc.
int64_t ParamCount(const ModelConfig& m) {
  const int64_t c = m.dim, v = m.vocab_size, f = m.ffn_dim, hd = int64_t{m.heads} * m.head_dim(),
                kvd = int64_t{m.kv_heads} * m.head_dim();
  const int64_t layer = 2 * c + hd * c + 2 * kvd * c + c * hd + 3 * f * c;
  return m.layers * layer + 2 * v * c + c;
}

EngineConfig Distill(int microbatches) {
  EngineConfig c;
  c.model = Llama(1, 16, 24);
  c.micro_batch_size = 2;
  c.seq_len = 5;
  c.microbatches = microbatches;
  c.seed = 7;
  c.teacher.enabled = true;
  c.teacher.model = Llama(3, 32, 40);
  c.teacher.loss = {0.5, 2.0};
  return c;
}

TEST(StageTeacher, HoldsItsWeightsOnlyNoGradsNoOptimizerState) {
  const EngineConfig c = Distill(2);
  absl::StatusOr<std::unique_ptr<RankTrainer>> trainer = RankTrainer::Create(c, nullptr, nullptr);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  StageTeacher* teacher = (*trainer)->stage().teacher();
  ASSERT_NE(teacher, nullptr);
  int64_t teacher_params = 0;
  for (Model* m : teacher->models()) {
    EXPECT_TRUE(m->forward_only());
    for (const Param& p : m->params()) {
      EXPECT_FALSE(p.grad.defined()) << p.name;
      EXPECT_FALSE(p.compute.defined()) << p.name;
      teacher_params += p.value.numel();
    }
  }
  EXPECT_EQ(teacher_params, ParamCount(c.teacher.model));
  EXPECT_EQ(teacher->ParamBytes(), 4 * ParamCount(c.teacher.model));
  absl::StatusOr<Model> training = Model::Create(c.teacher.model, DType::kF32);
  ASSERT_TRUE(training.ok());
  EXPECT_EQ(training->ParamBytes(), 2 * teacher->ParamBytes());  // value + grad
  EXPECT_NE(teacher->MemoryReport().find("teacher memory: 0.1 MiB of f32 weights on pipeline stage 0"),
            std::string::npos)
      << teacher->MemoryReport();

  // Optimizer state: Adam moments for the student's params only.
  int64_t student_params = 0;
  for (Model* m : (*trainer)->models()) student_params += static_cast<int64_t>(m->params().size());
  int64_t params = 0, moments = 0;
  for (const TensorShard& s : (*trainer)->CheckpointShards()) {
    if (s.name.rfind("params/", 0) == 0) ++params;
    if (s.name.rfind("adam/m/", 0) == 0) ++moments;
  }
  EXPECT_EQ(params, student_params);
  EXPECT_EQ(moments, student_params);

  // A distillation step runs against the forward-only teacher.
  std::vector<Tensor> tokens, targets;
  for (int m = 0; m < c.microbatches; ++m) {
    tokens.push_back(Tensor::Empty({c.micro_batch_size, c.seq_len}, DType::kI32));
    targets.push_back(Tensor::Empty({c.micro_batch_size, c.seq_len}, DType::kI32));
    for (int64_t i = 0; i < tokens.back().numel(); ++i) {
      tokens.back().data<int32_t>()[i] = static_cast<int32_t>((i * 7 + m) % 11);
      targets.back().data<int32_t>()[i] = static_cast<int32_t>((i * 5 + m + 1) % 11);
    }
  }
  for (Model* m : teacher->models()) m->Init(3);  // CPU: a forward-only model may still draw weights
  absl::StatusOr<double> loss = (*trainer)->ForwardBackward(tokens, targets, 1.0 / 20);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_GT(*loss, 0.0);
  EXPECT_GT((*trainer)->distill_sums().kl, 0.0);
}

}  // namespace
}  // namespace baton
