// `baton eval` (launcher/eval.h) on a tiny byte-level model: the figures
// equal an independent computation (Model::Loss over the same validation
// batches, argmaxes of Model::Logits); a model compared with itself agrees
// on every token; a teacher of another vocabulary is refused naming both
// sizes; the CLI prints the figures, writes JSON and exits 2 on bad input.
#include "launcher/eval.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launcher/config.h"
#include "nlohmann/json.hpp"
#include "runtime/indexed_dataset.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "tests/launcher/baton_process.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kModel[] = R"(
[model]
layers = 2
dim = 32
heads = 4
kv_heads = 2
ffn_dim = 48
vocab_size = VOCAB
[data]
val_fraction = 0.1
[train]
seq_len = 16
micro_batch_size = 3
global_batch_size = 3
)";

class EvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = baton::testing::FreshRunDir("baton_eval_test");
    const absl::Status corpus = baton::testing::WriteLetterCorpus(
        dir_ / "data", {.dtype = IndexDType::kUInt16, .documents = 120, .seed = 99, .first = 97, .min_length = 20,
                        .length_period = 13});
    ASSERT_TRUE(corpus.ok()) << corpus;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A checkpoint of a freshly initialised model; returns its path.
  // Tied embeddings at init predict the input token again (the residual is
  // its embedding): `tied` = false gives a model that predicts otherwise.
  std::string MakeCheckpoint(const std::string& name, int vocab, uint64_t seed, bool tied = true) {
    std::string toml = kModel;
    toml.replace(toml.find("VOCAB"), 5, std::to_string(vocab) + (tied ? "" : "\ntie_embeddings = false"));
    absl::StatusOr<JobConfig> job = ParseJobConfig(toml, name, {});
    EXPECT_TRUE(job.ok()) << job.status();
    absl::StatusOr<Model> m = Model::Create(job->model, DType::kF32);
    EXPECT_TRUE(m.ok());
    m->Init(seed);
    CheckpointData data;
    data.step = 7;
    for (const Param& p : m->params()) data.tensors.push_back({"params/" + p.name, p.value});
    data.attrs["config"] = job->source_text;
    const std::string path = (dir_ / (name + ".h5")).string();
    EXPECT_TRUE(WriteCheckpoint(path, data).ok());
    return path;
  }

  fs::path dir_;
};

TEST_F(EvalTest, FiguresEqualAnIndependentComputation) {
  const std::string ckpt = MakeCheckpoint("student", 258, 5);
  EvalOptions o;
  o.checkpoint = ckpt;
  o.data = (dir_ / "data").string();
  o.device = "cpu";
  o.batches = 2;
  absl::StatusOr<EvalResult> r = Evaluate(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->samples, 6);
  EXPECT_EQ(r->tokens, 96);

  absl::StatusOr<CheckpointData> data = ReadCheckpoint(ckpt);
  ASSERT_TRUE(data.ok());
  absl::StatusOr<JobConfig> job = ParseJobConfig(data->attrs["config"], "ckpt", {});
  ASSERT_TRUE(job.ok());
  absl::StatusOr<Model> m = Model::Create(job->model, DType::kF32);
  m->Init(5);
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::Open(o.data);
  absl::StatusOr<Sampler> sampler = Sampler::Create(*ds, 16, static_cast<uint64_t>(job->train.seed), 0.1);
  ASSERT_TRUE(sampler.ok());
  Tensor tokens = Tensor::Empty({3, 16}, DType::kI32), targets = Tensor::Empty({3, 16}, DType::kI32);
  double loss = 0;
  int64_t hits = 0;
  for (int64_t i = 0; i < 2; ++i) {
    sampler->ValBatch(i, 3, tokens, targets);
    loss += m->Loss(tokens, targets);
    const Tensor logits = m->Logits(tokens);
    for (int64_t row = 0; row < 48; ++row) {
      const float* l = logits.data<float>() + row * 258;
      int64_t best = 0;
      for (int64_t j = 1; j < 258; ++j) best = l[j] > l[best] ? j : best;
      hits += best == targets.data<int32_t>()[row];
    }
  }
  EXPECT_NEAR(r->model.val_loss, loss / 96, 1e-5 * loss / 96);  // f32 kernel vs double reduction
  EXPECT_DOUBLE_EQ(r->model.perplexity, std::exp(r->model.val_loss));
  EXPECT_DOUBLE_EQ(r->model.top1_acc, static_cast<double>(hits) / 96);
  EXPECT_GT(r->model.val_loss, std::log(258.0) - 1.0);  // untrained: near uniform
  EXPECT_FALSE(r->has_teacher);
}

TEST_F(EvalTest, AModelAgreesWithItselfAndDiffersFromAnother) {
  const std::string a = MakeCheckpoint("a", 258, 5), b = MakeCheckpoint("b", 258, 6, /*tied=*/false);
  EvalOptions o;
  o.checkpoint = a;
  o.data = (dir_ / "data").string();
  o.device = "cpu";
  o.teacher = a;
  absl::StatusOr<EvalResult> same = Evaluate(o);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->agreement, 1.0);
  EXPECT_EQ(same->teacher.val_loss, same->model.val_loss);
  o.teacher = b;
  absl::StatusOr<EvalResult> other = Evaluate(o);
  ASSERT_TRUE(other.ok());
  EXPECT_LT(other->agreement, 0.5);
  EXPECT_NE(other->teacher.val_loss, other->model.val_loss);
}

TEST_F(EvalTest, TeacherOfAnotherVocabularyIsRefusedNamingBothSizes) {
  EvalOptions o;
  o.checkpoint = MakeCheckpoint("student", 258, 5);
  o.teacher = MakeCheckpoint("teacher", 300, 5);
  o.data = (dir_ / "data").string();
  o.device = "cpu";
  absl::StatusOr<EvalResult> r = Evaluate(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("model.vocab_size=300"));
  EXPECT_THAT(r.status().message(), HasSubstr("model.vocab_size=258"));
  o.teacher = "";
  o.batches = 1000;
  EXPECT_THAT(Evaluate(o).status().message(), HasSubstr("--batches 1000"));
}

// Runs the baton binary; returns its exit status, stdout+stderr in *out.
int RunBaton(const std::string& args, std::string* out) {
  return baton::testing::RunShell(std::string(BATON_BINARY) + " " + args + " 2>&1", out);
}

TEST_F(EvalTest, CommandPrintsFiguresWritesJsonAndRefusesBadFlags) {
  const std::string a = MakeCheckpoint("a", 258, 5);
  const std::string json = (dir_ / "eval.json").string();
  std::string out;
  ASSERT_EQ(RunBaton("eval --checkpoint " + a + " --data " + (dir_ / "data").string() + " --teacher " + a +
                         " --device cpu --batches 1 --json " + json,
                     &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("top1_acc"));
  EXPECT_THAT(out, HasSubstr("agreement with the teacher (top-1): 1.0000"));
  std::ifstream in(json);
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["agreement"].get<double>(), 1.0);
  EXPECT_EQ(j["tokens"].get<int64_t>(), 48);
  EXPECT_EQ(RunBaton("eval --checkpoint " + a, &out), 2);
  EXPECT_THAT(out, HasSubstr("--data is required"));
  EXPECT_EQ(RunBaton("eval --checkpoint " + a + " --data " + (dir_ / "data").string() + " --bogus 1", &out), 2);
  EXPECT_EQ(RunBaton("eval --checkpoint /nonexistent.h5 --data " + (dir_ / "data").string(), &out), 2);
  EXPECT_THAT(out, HasSubstr("/nonexistent.h5"));
}

}  // namespace
}  // namespace baton
