// Online distillation through the train driver (launcher/distill.h,
// engine/stage_teacher.h), one process: resuming a distillation run gives
// the bits of the uninterrupted run, and the point of it all: a small
// student distilled from a briefly trained teacher reaches a lower
// validation loss than the same student trained from scratch on the same
// tokens with the same seed. Data: the `computers` file of the Debian
// `fortunes` package, byte-tokenized (skipped where it is not installed).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "gtest/gtest.h"
#include "launcher/config.h"
#include "launcher/distill.h"
#include "launcher/train.h"
#include "nlohmann/json.hpp"

namespace baton {
namespace {

namespace fs = std::filesystem;

constexpr char kCorpus[] = "/usr/share/games/fortunes/computers";

// The teacher: 3 layers of dim 64. The student: 1 layer of the same widths
// (a third of the teacher), initialised from the teacher's layers when
// distilled (Minitron-style depth pruning), from the seed when not.
constexpr char kTeacherModel[] = R"(
[model]
layers = 3
dim = 64
heads = 4
kv_heads = 2
ffn_dim = 176
vocab_size = 258
)";
constexpr char kStudentModel[] = R"(
[model]
layers = 1
dim = 64
heads = 4
kv_heads = 2
ffn_dim = 176
vocab_size = 258
)";
constexpr char kJob[] = R"(
[data]
tokenizer = "byte"
val_fraction = 0.05
[train]
seed = 7
seq_len = 64
micro_batch_size = 4
global_batch_size = 8
lr = 3e-3
min_lr = 3e-4
warmup_steps = 10
eval_batches = 8
[checkpoint]
resume = "none"
keep = 100
[output]
progress = "lines"
[distill]
alpha = 0.7
temperature = 2.0
mode = "online"
)";

class DistillTrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("baton_distill_train_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override {
    if (!fs::exists(kCorpus)) GTEST_SKIP() << kCorpus << " is missing (Debian package fortunes)";
  }

  static JobConfig Config(const char* model, const std::string& run, std::vector<std::string> sets) {
    sets.push_back("data.path=\"" + (dir_ / "data" / "computers").string() + "\"");
    sets.push_back(std::string("data.corpus=[\"") + kCorpus + "\"]");
    sets.push_back("checkpoint.dir=\"" + (dir_ / run / "ckpt").string() + "\"");
    sets.push_back("output.metrics=\"" + (dir_ / run / "metrics.jsonl").string() + "\"");
    absl::StatusOr<JobConfig> c = ParseJobConfig(std::string(model) + kJob, run + ".toml", sets);
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }

  // A teacher trained `steps` steps; its last checkpoint.
  static std::string Teacher(int steps) {
    TrainSummary s;
    const absl::Status st = Train(Config(kTeacherModel, "teacher" + std::to_string(steps),
                                         {"train.steps=" + std::to_string(steps), "train.lr=5e-3"}),
                                  &s);
    EXPECT_TRUE(st.ok()) << st;
    return s.checkpoint;
  }

  static TrainSummary Distill(const std::string& teacher, const std::string& run, std::vector<std::string> sets) {
    sets.push_back("teacher.checkpoint=\"" + teacher + "\"");
    const JobConfig config = Config(kStudentModel, run, sets);
    absl::StatusOr<DriverExtras> extras = OnlineDistillExtras(config);
    EXPECT_TRUE(extras.ok()) << extras.status();
    TrainSummary s;
    const absl::Status st = Train(config, &s, nullptr, &*extras);
    EXPECT_TRUE(st.ok()) << st;
    return s;
  }

  static std::vector<nlohmann::json> Lines(const std::string& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_ / run / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  static fs::path dir_;
};

fs::path DistillTrainTest::dir_;

TEST_F(DistillTrainTest, ResumeIsBitExact) {
  // teacher-layers: a resumed run must not take the init again.
  const std::string init = "student.init=\"teacher-layers\"";
  const std::string teacher = Teacher(4);
  Distill(teacher, "whole", {"train.steps=6", init});
  Distill(teacher, "split", {"train.steps=6", "train.exit_interval=3", init});
  Distill(teacher, "split", {"train.steps=6", "checkpoint.resume=\"auto\"", init});
  std::vector<double> whole, split;
  for (const nlohmann::json& j : Lines("whole")) {
    if (j.contains("loss")) whole.push_back(j["loss"].get<double>());
  }
  for (const nlohmann::json& j : Lines("split")) {
    if (j.contains("loss")) split.push_back(j["loss"].get<double>());
    if (j.contains("kl")) EXPECT_GT(j["kl"].get<double>(), 0.0);
  }
  ASSERT_EQ(whole.size(), 6u);
  ASSERT_EQ(split.size(), 6u);
  for (size_t i = 0; i < whole.size(); ++i) EXPECT_EQ(whole[i], split[i]) << "step " << i + 1;
  auto a = ReadCheckpoint((dir_ / "whole" / "ckpt" / "step_00000006.h5").string());
  auto b = ReadCheckpoint((dir_ / "split" / "ckpt" / "step_00000006.h5").string());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->tensors.size(), b->tensors.size());
  for (size_t i = 0; i < a->tensors.size(); ++i) {
    const Tensor& x = a->tensors[i].tensor;
    ASSERT_EQ(x.nbytes(), b->tensors[i].tensor.nbytes());
    EXPECT_EQ(0, std::memcmp(x.raw(), b->tensors[i].tensor.raw(), x.nbytes())) << a->tensors[i].name;
  }
}

double LastVal(const std::vector<nlohmann::json>& lines, const char* key) {
  double v = -1;
  for (const nlohmann::json& j : lines) {
    if (j.contains(key)) v = j[key].get<double>();
  }
  return v;
}

TEST_F(DistillTrainTest, DistilledStudentBeatsScratch) {
  std::vector<std::string> steps = {"train.steps=60", "train.eval_every=60"};
  TrainSummary scratch;
  ASSERT_TRUE(Train(Config(kStudentModel, "scratch", steps), &scratch).ok());
  steps.push_back("student.init=\"teacher-layers\"");
  const TrainSummary distilled = Distill(Teacher(150), "distilled", steps);
  const std::vector<nlohmann::json> lines = Lines("distilled");
  const double agreement = LastVal(lines, "agreement"), teacher = LastVal(lines, "teacher_val_loss");
  std::printf("val loss: teacher %.4f, distilled %.4f, scratch %.4f; distilled top-1 %.4f, agreement %.4f\n",
              teacher, distilled.last_val_loss, scratch.last_val_loss, LastVal(lines, "top1_acc"), agreement);
  ASSERT_GT(distilled.last_val_loss, 0);
  ASSERT_GT(teacher, 0);
  EXPECT_LT(teacher, scratch.last_val_loss);  // a teacher worth distilling
  EXPECT_LT(distilled.last_val_loss, scratch.last_val_loss);
  EXPECT_GT(agreement, 0.0);
  EXPECT_LE(agreement, 1.0);
}

}  // namespace
}  // namespace baton
