// End-to-end tests of `baton train` on a tiny dataset: resume exactness
// (20 steps == 10 + resume + 10, bit for bit: losses and weights), recompute
// policies giving the same losses as none through the whole driver, the
// metrics file's contract (a step's row written before its checkpoint), and
// the CLI's one-line errors with exit status 2.
#include "launcher/train.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/indexed_dataset.h"
#include "runtime/tokenizer.h"
#include "tests/launcher/baton_process.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = baton::testing::FreshRunDir("baton_train_test");
    // 300 short English-like documents, byte-tokenized.
    ByteTokenizer tok;
    const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
                           "a", "baton", "passes", "between", "runners", "in", "relay"};
    std::vector<std::vector<int32_t>> docs;
    uint64_t x = 12345;
    for (int d = 0; d < 300; ++d) {
      std::string text;
      int n = 5 + d % 11;
      for (int w = 0; w < n; ++w) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        text += words[(x >> 33) % 15];
        text += w + 1 < n ? " " : ".";
      }
      std::vector<int32_t> ids = {tok.bos_id()};
      for (int32_t id : tok.Encode(text)) ids.push_back(id);
      ids.push_back(tok.eos_id());
      docs.push_back(std::move(ids));
    }
    const absl::Status corpus = baton::testing::WriteCorpus(dir_ / "corpus", IndexDType::kUInt16, docs);
    ASSERT_TRUE(corpus.ok()) << corpus;
  }
  void TearDown() override { fs::remove_all(dir_); }

  JobConfig Config(const std::string& run, std::vector<std::string> extra = {}) {
    std::string toml = R"(
[model]
layers = 2
dim = 32
heads = 4
kv_heads = 2
ffn_dim = 48
vocab_size = 258
[data]
val_fraction = 0.05
[train]
steps = 20
seq_len = 24
micro_batch_size = 4
global_batch_size = 8
lr = 1e-2
warmup_steps = 3
eval_every = 5
eval_batches = 2
[checkpoint]
every = 5
keep = 0
resume = "auto"
[output]
progress = "lines"
)";
    std::vector<std::string> sets = {"data.path=\"" + (dir_ / "corpus").string() + "\"",
                                     "checkpoint.dir=\"" + (dir_ / run / "ckpt").string() + "\"",
                                     "output.metrics=\"" + (dir_ / run / "metrics.jsonl").string() + "\""};
    sets.insert(sets.end(), extra.begin(), extra.end());
    auto config = ParseJobConfig(toml, "test.toml", sets);
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  }

  // Loss per step and val_loss per step from a metrics file (later lines win).
  static std::map<int64_t, double> Losses(const fs::path& metrics, const char* key) {
    std::map<int64_t, double> out;
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line);
      if (j.contains(key)) out[j["step"].get<int64_t>()] = j[key].get<double>();
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(TrainTest, ResumeIsBitExact) {
  TrainSummary whole;
  ASSERT_TRUE(Train(Config("whole"), &whole).ok());
  EXPECT_EQ(whole.last_step, 20);

  TrainSummary first, second;
  ASSERT_TRUE(Train(Config("split", {"train.exit_interval=10"}), &first).ok());
  EXPECT_EQ(first.last_step, 10);
  ASSERT_TRUE(Train(Config("split"), &second).ok());
  EXPECT_EQ(second.first_step, 11);
  EXPECT_EQ(second.last_step, 20);

  auto a = Losses(dir_ / "whole" / "metrics.jsonl", "loss");
  auto b = Losses(dir_ / "split" / "metrics.jsonl", "loss");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (int64_t s = 1; s <= 20; ++s) EXPECT_EQ(a[s], b[s]) << "step " << s;  // bitwise (doubles)
  EXPECT_EQ(Losses(dir_ / "whole" / "metrics.jsonl", "val_loss"),
            Losses(dir_ / "split" / "metrics.jsonl", "val_loss"));

  auto ca = ReadCheckpoint((dir_ / "whole" / "ckpt" / "step_00000020.h5").string());
  auto cb = ReadCheckpoint((dir_ / "split" / "ckpt" / "step_00000020.h5").string());
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE(cb.ok()) << cb.status();
  ASSERT_EQ(ca->tensors.size(), cb->tensors.size());
  for (size_t i = 0; i < ca->tensors.size(); ++i) {
    const Tensor& x = ca->tensors[i].tensor;
    const Tensor& y = cb->tensors[i].tensor;
    ASSERT_EQ(ca->tensors[i].name, cb->tensors[i].name);
    ASSERT_EQ(x.nbytes(), y.nbytes());
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << ca->tensors[i].name;
  }
  EXPECT_EQ(ca->attrs.at("sampler"), cb->attrs.at("sampler"));
  // And the loss fell: the model learned something in 20 steps.
  EXPECT_LT(a[20], a[1] - 0.5);
}

// A weights-only checkpoint (what `baton import` writes) starts a new run
// from those weights: step 1, fresh optimizer, the trained weights' loss.
TEST_F(TrainTest, WeightsOnlyCheckpointStartsANewRun) {
  TrainSummary trained;
  ASSERT_TRUE(Train(Config("a", {"train.steps=15"}), &trained).ok());
  auto full = ReadCheckpoint((dir_ / "a" / "ckpt" / "step_00000015.h5").string());
  ASSERT_TRUE(full.ok()) << full.status();
  CheckpointData weights;
  for (const CheckpointTensor& t : full->tensors) {
    if (t.name.rfind("params/", 0) == 0) weights.tensors.push_back(t);
  }
  const std::string path = (dir_ / "weights.h5").string();
  ASSERT_TRUE(WriteCheckpoint(path, weights).ok());

  TrainSummary fresh, tuned;
  ASSERT_TRUE(Train(Config("fresh", {"train.steps=2"}), &fresh).ok());
  ASSERT_TRUE(Train(Config("tuned", {"train.steps=2", "checkpoint.resume=\"" + path + "\""}), &tuned).ok());
  EXPECT_EQ(tuned.first_step, 1);
  EXPECT_LT(tuned.first_loss, fresh.first_loss - 0.5);  // it starts from the trained weights
  EXPECT_EQ(Losses(dir_ / "tuned" / "metrics.jsonl", "loss").size(), 2u);
}

// Writing checkpoints must not disturb training (a bug once reset the Adam
// moments at every checkpoint: resume tests cannot see that, both runs reset).
TEST_F(TrainTest, CheckpointingDoesNotChangeTheRun) {
  TrainSummary s;
  ASSERT_TRUE(Train(Config("with", {"train.steps=9", "checkpoint.every=3"}), &s).ok());
  ASSERT_TRUE(Train(Config("without", {"train.steps=9", "checkpoint.dir=\"\""}), &s).ok());
  EXPECT_EQ(Losses(dir_ / "with" / "metrics.jsonl", "loss"), Losses(dir_ / "without" / "metrics.jsonl", "loss"));
}

// A step's metrics row goes out before its checkpoint, so a run stopped
// between the two (killed, or here a save that fails: a folder stands where
// step 3's file goes) keeps the row of the step it resumes after.
// survive_test's kill loop lands in that window only by chance.
TEST_F(TrainTest, StepRowIsWrittenBeforeItsCheckpoint) {
  fs::create_directories(dir_ / "r" / "ckpt" / "step_00000003.h5" / "in_the_way");
  TrainSummary s;
  const absl::Status st =
      Train(Config("r", {"train.steps=5", "checkpoint.every=1", "checkpoint.resume=\"none\""}), &s);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("step_00000003.h5"));
  const std::map<int64_t, double> rows = Losses(dir_ / "r" / "metrics.jsonl", "loss");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows.rbegin()->first, 3) << "step 3's row must be written before its checkpoint";
}

TEST_F(TrainTest, RecomputePoliciesGiveTheSameLosses) {
  TrainSummary s;
  ASSERT_TRUE(Train(Config("none", {"train.steps=6", "checkpoint.dir=\"\""}), &s).ok());
  auto ref = Losses(dir_ / "none" / "metrics.jsonl", "loss");
  for (const char* policy : {"full", "selective", "every_k"}) {
    ASSERT_TRUE(Train(Config(policy, {"train.steps=6", "checkpoint.dir=\"\"",
                                      std::string("recompute.policy=") + policy}),
                      &s)
                    .ok());
    EXPECT_EQ(Losses(dir_ / policy / "metrics.jsonl", "loss"), ref) << policy;
  }
}

TEST_F(TrainTest, MetricsHaveManifestAndPerStepKeys) {
  TrainSummary s;
  ASSERT_TRUE(Train(Config("m", {"train.steps=5"}), &s).ok());
  std::ifstream in(dir_ / "m" / "metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  nlohmann::json manifest = nlohmann::json::parse(line)["manifest"];
  EXPECT_THAT(manifest["config"].get<std::string>(), HasSubstr("[model]"));
  EXPECT_EQ(manifest["data_bin_fnv1a64"].get<std::string>().size(), 16u);
  EXPECT_TRUE(manifest.contains("git_revision"));
  int steps = 0, vals = 0;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("val_loss")) {
      ++vals;
      continue;
    }
    ++steps;
    for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["step"].get<int64_t>(), steps);
  }
  EXPECT_EQ(steps, 5);
  EXPECT_EQ(vals, 1);  // eval_every=5
}

// data.corpus: the first run tokenizes the corpus into data.path.
TEST_F(TrainTest, TokenizesTheCorpusOnFirstUse) {
  {
    std::ofstream text(dir_ / "tales.txt");
    for (int i = 0; i < 400; ++i) text << "Once upon a time, tale number " << i << " began.\n%\n";
  }
  const std::string prefix = (dir_ / "made" / "tales").string();
  TrainSummary s;
  ASSERT_TRUE(Train(Config("c", {"train.steps=2", "data.path=\"" + prefix + "\"",
                                 "data.corpus=\"" + (dir_ / "tales.txt").string() + "\""}),
                    &s)
                  .ok());
  auto ds = IndexedDataset::Open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->num_documents(), 400);
  // A tokenizer with more ids than the model is refused before any work.
  absl::Status st = Train(Config("d", {"data.path=\"" + (dir_ / "other").string() + "\"",
                                       "data.corpus=\"" + (dir_ / "tales.txt").string() + "\"",
                                       "model.vocab_size=200"}),
                          &s);
  EXPECT_THAT(std::string(st.message()), HasSubstr("model.vocab_size=200"));
}

TEST_F(TrainTest, MissingDatasetIsAClearError) {
  TrainSummary s;
  absl::Status st = Train(Config("x", {"data.path=\"/nonexistent/corpus\""}), &s);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("/nonexistent/corpus"));
  EXPECT_FALSE(fs::exists(dir_ / "x" / "ckpt"));
}

// The CLI: bad input -> exit status 2 and exactly one line on stderr naming the key.
TEST(CliTest, BadInputIsOneLineAndExitTwo) {
  const std::string cfg = std::string(BATON_SOURCE_DIR) + "/examples/tiny.toml";
  struct Case {
    std::string args, needle;
  } cases[] = {
      {"train --config " + cfg + " --set train.stesp=3", "train.stesp"},
      {"train --config " + cfg + " --set train.steps=ten", "train.steps"},
      {"train --config " + cfg + " --set model.kv_heads=3", "model.kv_heads"},
      {"train --config " + cfg + " --set recompute.policy=most", "recompute.policy"},
      {"train --config " + cfg + " --set train.device=tpu", "train.device"},
      {"train --config " + cfg + " --set train.device=cuda", "train.device=cuda"},  // no GPU here
      {"train --config /nonexistent.toml", "/nonexistent.toml"},
      {"train --config " + cfg + " --set data.path=/nonexistent/x data.corpus=[]", "/nonexistent/x"},
      {"train", "--config"},
      {"frobnicate", "frobnicate"},
  };
  for (const Case& c : cases) {
    std::string err;  // stderr only
    const int status = baton::testing::RunShell(std::string(BATON_BINARY) + " " + c.args + " 2>&1 >/dev/null", &err);
    EXPECT_EQ(status, 2) << c.args << "\n" << err;
    EXPECT_THAT(err, HasSubstr(c.needle)) << c.args;
    EXPECT_THAT(err, ::testing::StartsWith("baton: error: ")) << c.args;
    if (c.args != "train" && c.args != "frobnicate") {  // usage errors add the usage text
      EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << c.args << "\n" << err;
    }
  }
}

}  // namespace
}  // namespace baton
