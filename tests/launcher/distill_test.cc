// `baton distill` from the command line (launcher/distill.h): the
// [teacher] [distill] [student] config rules; --dump-teacher writes exactly
// the top-k of the teacher's logits for each training sample; a teacher of
// another vocabulary or width is refused naming both sizes (exit 2); the
// offline loop refuses a missing dump (exit 2) and trains from one; an
// online run reports the teacher's memory; examples/distill.toml stays valid.
#include "launcher/distill.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "checkpoints/teacher_logits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/distill_offline.h"
#include "runtime/indexed_dataset.h"
#include "runtime/sampler.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ModelToml(int layers, int dim, int vocab) {
  return "[model]\nlayers = " + std::to_string(layers) + "\ndim = " + std::to_string(dim) +
         "\nheads = 4\nkv_heads = 2\nffn_dim = 48\ntie_embeddings = false\nvocab_size = " + std::to_string(vocab) + "\n";
}

class DistillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("baton_distill_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto writer = IndexedDatasetWriter::Create((dir_ / "data").string(), IndexDType::kUInt16);
    ASSERT_TRUE(writer.ok());
    uint64_t x = 7;
    for (int d = 0; d < 40; ++d) {
      std::vector<int32_t> ids;
      for (int i = 0; i < 15 + d % 7; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids.push_back(static_cast<int32_t>(1 + (x >> 33) % 26));
      }
      ASSERT_TRUE(writer->AddSequence(ids).ok());
      writer->EndDocument();
    }
    ASSERT_TRUE(writer->Finish().ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Teacher(int layers, int dim, int vocab) {
    absl::StatusOr<JobConfig> job = ParseJobConfig(ModelToml(layers, dim, vocab), "teacher", {});
    EXPECT_TRUE(job.ok()) << job.status();
    absl::StatusOr<Model> m = Model::Create(job->model, DType::kF32);
    m->Init(11);
    CheckpointData data;
    for (const Param& p : m->params()) data.tensors.push_back({"params/" + p.name, p.value});
    data.attrs["config"] = job->source_text;
    const std::string path = (dir_ / ("teacher_" + std::to_string(vocab) + "_" + std::to_string(dim) + ".h5")).string();
    EXPECT_TRUE(WriteCheckpoint(path, data).ok());
    return path;
  }
  // A student job distilling from `teacher`; returns the config file.
  std::string Job(const std::string& teacher, int layers, int dim, int vocab, const std::string& extra = "") {
    const std::string text = ModelToml(layers, dim, vocab) + "[data]\npath = \"" + (dir_ / "data").string() +
                             "\"\nval_fraction = 0.1\n[train]\nseq_len = 8\nmicro_batch_size = 3\nglobal_batch_size = 3\n"
                             "device = \"cpu\"\n[teacher]\ncheckpoint = \"" + teacher + "\"\n[distill]\nmode = \"offline\"\n"
                             "topk = 5\ntemperature = 2.0\nlogits_path = \"" + (dir_ / "logits").string() + "\"\n" + extra;
    const std::string path = (dir_ / "job.toml").string();
    std::ofstream(path) << text;
    return path;
  }

  fs::path dir_;
};

int RunBaton(const std::string& args, std::string* out) {
  FILE* p = popen((std::string(BATON_BINARY) + " " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(DistillTest, ConfigRulesNameTheKey) {
  const std::string base = ModelToml(2, 32, 61);
  auto error = [&](const std::string& extra) { return std::string(ParseJobConfig(base + extra, "j", {}).status().message()); };
  EXPECT_THAT(error("[distill]\nalpha = 1.5\n"), HasSubstr("distill.alpha=1.5 must be in [0, 1]"));
  EXPECT_THAT(error("[distill]\ntemperature = 0\n"), HasSubstr("distill.temperature=0 must be > 0"));
  EXPECT_THAT(error("[distill]\ntopk = 62\nmode = \"offline\"\nlogits_path = \"x\"\n"), HasSubstr("distill.topk=62 must be in [1, model.vocab_size=61]"));
  EXPECT_THAT(error("[distill]\nmode = \"offline\"\n"), HasSubstr("needs distill.logits_path"));
  EXPECT_THAT(error("[distill]\nmode = \"both\"\n"), HasSubstr("distill.mode: expected one of online|offline"));
  EXPECT_THAT(error("[student]\ninit = \"teacher-layers\"\n"), HasSubstr("needs teacher.checkpoint"));
  EXPECT_THAT(error("[student]\nlayers_from = [0, 1]\n"), HasSubstr("student.layers_from is set but student.init=\"random\""));
  EXPECT_THAT(error("[teacher]\ncheckpoint = \"t.h5\"\n[student]\ninit = \"teacher-layers\"\nlayers_from = [0]\n"),
              HasSubstr("student.layers_from has 1 entries but model.layers=2"));
  EXPECT_TRUE(ParseJobConfig(base + "[distill]\nalpha = 0.0\n", "j", {}).ok());
}

TEST_F(DistillTest, ExampleConfigIsValid) {
  absl::StatusOr<JobConfig> c = LoadJobConfig(std::string(BATON_SOURCE_DIR) + "/examples/distill.toml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->student.layers_from, (std::vector<int>{0, 2}));
  EXPECT_EQ(c->distill.mode, DistillMode::kOnline);
}

TEST_F(DistillTest, DumpTeacherWritesTheTopKOfEveryTrainingSample) {
  const std::string teacher = Teacher(3, 32, 61);
  std::string out;
  ASSERT_EQ(RunBaton("distill --config " + Job(teacher, 2, 32, 61) + " --dump-teacher", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("teacher: " + teacher));
  absl::StatusOr<std::unique_ptr<TeacherLogitsReader>> r = TeacherLogitsReader::Open((dir_ / "logits").string());
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<IndexedDataset> ds = IndexedDataset::Open((dir_ / "data").string());
  absl::StatusOr<Sampler> sampler = Sampler::Create(*ds, 8, 1234, 0.1);
  EXPECT_EQ((*r)->meta().num_samples, sampler->num_train_samples());
  EXPECT_EQ((*r)->meta().dataset_tokens, ds->num_tokens());
  EXPECT_EQ((*r)->meta().temperature, 2.0);
  // Samples 3..5 (the dump's second batch: a GEMM's bits may depend on its
  // row count) recomputed here: the teacher's logits and their top-5, bit for bit.
  absl::StatusOr<CheckpointData> data = ReadCheckpoint(teacher);
  absl::StatusOr<JobConfig> tj = ParseJobConfig(data->attrs["config"], "t", {});
  absl::StatusOr<Model> m = Model::Create(tj->model, DType::kF32);
  for (Param& p : m->params()) ASSERT_TRUE(CopyInto(*data, "params/" + p.name, p.value).ok());
  Tensor tokens, targets;
  sampler->FillTrain(std::vector<int64_t>{3, 4, 5}, tokens, targets);
  const TeacherTopK want = *TeacherTopKOf(m->Logits(tokens), 5, 2.0);
  const TeacherTopK got = *(*r)->Read({3, 4, 5});
  EXPECT_EQ(std::memcmp(got.values.raw(), want.values.raw(), want.values.nbytes()), 0);
  EXPECT_EQ(std::memcmp(got.indices.raw(), want.indices.raw(), want.indices.nbytes()), 0);
  EXPECT_EQ(std::memcmp(got.rest_lse.raw(), want.rest_lse.raw(), want.rest_lse.nbytes()), 0);
  // A second dump into the same place is refused rather than overwriting it.
  EXPECT_NE(RunBaton("distill --config " + Job(teacher, 2, 32, 61) + " --dump-teacher", &out), 0);
  EXPECT_THAT(out, HasSubstr("already holds teacher logits"));
}

TEST_F(DistillTest, MismatchedTeacherIsRefusedNamingBothSizes) {
  std::string out;
  EXPECT_EQ(RunBaton("distill --config " + Job(Teacher(3, 32, 70), 2, 32, 61), &out), 2);
  EXPECT_THAT(out, HasSubstr("model.vocab_size=61 but teacher.checkpoint"));
  EXPECT_THAT(out, HasSubstr("has model.vocab_size=70"));
  EXPECT_EQ(RunBaton("distill --config " + Job(Teacher(3, 64, 61), 2, 32, 61, "[student]\ninit = \"teacher-layers\"\n"),
                     &out),
            2);
  EXPECT_THAT(out, HasSubstr("model.dim=32 but the teacher's is 64"));
}

TEST_F(DistillTest, OfflineTrainingReadsTheDumpAndRefusesAMissingOne) {
  std::string out;
  const std::string job = Job(Teacher(4, 32, 61), 2, 32, 61, "[student]\ninit = \"teacher-layers\"\n");
  EXPECT_EQ(RunBaton("distill --config " + job + " --set train.steps=2", &out), 2);
  EXPECT_THAT(out, HasSubstr("no index.json"));
  ASSERT_EQ(RunBaton("distill --config " + job + " --dump-teacher", &out), 0) << out;
  ASSERT_EQ(RunBaton("distill --config " + job + " --set train.steps=2", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("distill: offline"));
  EXPECT_THAT(out, HasSubstr("step 2/2"));
  EXPECT_EQ(RunBaton("distill", &out), 2);
  EXPECT_THAT(out, HasSubstr("--config FILE is required"));
}

// Online, the start-up reports the teacher's memory on its own line: its
// weights only (4 bytes per parameter on the CPU: 34912 parameters here).
TEST_F(DistillTest, OnlineRunReportsTheTeachersMemory) {
  std::string out;
  const std::string job = Job(Teacher(4, 32, 61), 2, 32, 61);
  ASSERT_EQ(RunBaton("distill --config " + job + " --set distill.mode='\"online\"' train.steps=1", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("teacher memory: 0.1 MiB of f32 weights on pipeline stage 0 (forward only: no grads, "
                             "no optimizer state)"));
}

}  // namespace
}  // namespace baton
