// `baton distill` on the GPU from the command line (label gpu): offline
// mode end to end with train.device = "cuda" (the teacher's top-k rows
// uploaded through pinned memory, the CUDA offline loss of
// kernels/cuda/distill_topk.h), against the same job on the CPU: the student
// starts from the teacher's layers, so both runs start from the same
// weights, and every step's loss agrees to bf16 tolerance (relative 3e-2:
// the GPU computes in bf16, the CPU in f32). Online mode on the GPU the
// same way, for the teacher held in bf16 without gradients, and that
// teacher's bytes: a fifth of a training model's. Skips where no GPU is
// visible.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/gpu.h"
#include "launcher/config.h"
#include "nlohmann/json.hpp"
#include "runtime/indexed_dataset.h"
#include "runtime/model.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Widths the GPU kernels take (head dim 16, vocabulary a multiple of 8).
std::string ModelToml(int layers) {
  return "[model]\nlayers = " + std::to_string(layers) +
         "\ndim = 64\nheads = 4\nkv_heads = 2\nffn_dim = 128\ntie_embeddings = false\nvocab_size = 64\n";
}

int RunBaton(const std::string& args, std::string* out) {
  FILE* p = popen((std::string(BATON_BINARY) + " " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class DistillGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << CudaDeviceSummary();
    dir_ = fs::temp_directory_path() / ("baton_distill_gpu_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto writer = IndexedDatasetWriter::Create((dir_ / "data").string(), IndexDType::kUInt16);
    ASSERT_TRUE(writer.ok());
    uint64_t x = 7;
    for (int d = 0; d < 60; ++d) {
      std::vector<int32_t> ids;
      for (int i = 0; i < 40 + d % 7; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids.push_back(static_cast<int32_t>(1 + (x >> 33) % 50));
      }
      ASSERT_TRUE(writer->AddSequence(ids).ok());
      writer->EndDocument();
    }
    ASSERT_TRUE(writer->Finish().ok());
    absl::StatusOr<JobConfig> job = ParseJobConfig(ModelToml(4), "teacher", {});
    ASSERT_TRUE(job.ok()) << job.status();
    absl::StatusOr<Model> m = Model::Create(job->model, DType::kF32);
    ASSERT_TRUE(m.ok());
    m->Init(11);
    CheckpointData data;
    for (const Param& p : m->params()) data.tensors.push_back({"params/" + p.name, p.value});
    data.attrs["config"] = job->source_text;
    teacher_ = (dir_ / "teacher.h5").string();
    ASSERT_TRUE(WriteCheckpoint(teacher_, data).ok());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // The job file of `run` (its own metrics file); mode online or offline.
  std::string Job(const std::string& run, const std::string& device, const std::string& mode) {
    const std::string text =
        ModelToml(2) + "[data]\npath = \"" + (dir_ / "data").string() +
        "\"\nval_fraction = 0.1\n[train]\nseq_len = 16\nmicro_batch_size = 4\nglobal_batch_size = 8\nsteps = 4\n"
        "lr = 1e-3\ndevice = \"" + device + "\"\n[teacher]\ncheckpoint = \"" + teacher_ + "\"\n[distill]\nmode = \"" +
        mode + "\"\ntopk = 8\ntemperature = 2.0\nlogits_path = \"" + (dir_ / "logits").string() +
        "\"\n[student]\ninit = \"teacher-layers\"\n[output]\nmetrics = \"" + (dir_ / (run + ".jsonl")).string() +
        "\"\n";
    const std::string path = (dir_ / (run + ".toml")).string();
    std::ofstream(path) << text;
    return path;
  }
  std::vector<double> Losses(const std::string& run) {
    std::vector<double> out;
    std::ifstream in(dir_ / (run + ".jsonl"));
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j.contains("loss")) out.push_back(j["loss"].get<double>());
    }
    return out;
  }
  void ExpectSameCurve(const std::string& cpu, const std::string& gpu) {
    const std::vector<double> a = Losses(cpu), b = Losses(gpu);
    ASSERT_EQ(a.size(), 4u);
    ASSERT_EQ(b.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 3e-2 * a[i]) << "step " << i + 1;
  }

  fs::path dir_;
  std::string teacher_;
};

TEST_F(DistillGpuTest, OfflineOnTheGpuFollowsTheCpuRun) {
  std::string out;
  ASSERT_EQ(RunBaton("distill --config " + Job("dump", "cuda", "offline") + " --dump-teacher", &out), 0) << out;
  ASSERT_EQ(RunBaton("distill --config " + Job("cpu", "cpu", "offline"), &out), 0) << out;
  ASSERT_EQ(RunBaton("distill --config " + Job("gpu", "cuda", "offline"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("distill: offline"));
  ExpectSameCurve("cpu", "gpu");
}

TEST_F(DistillGpuTest, OnlineOnTheGpuFollowsTheCpuRunWithABf16Teacher) {
  std::string out;
  ASSERT_EQ(RunBaton("distill --config " + Job("cpu", "cpu", "online"), &out), 0) << out;
  ASSERT_EQ(RunBaton("distill --config " + Job("gpu", "cuda", "online"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("MiB of bf16 weights on pipeline stage 0 (forward only"));
  ExpectSameCurve("cpu", "gpu");
}

// A forward-only bf16 model on the GPU holds its bf16 weights only: a fifth
// of a training model's f32 masters + f32 grads + bf16 compute copy.
TEST_F(DistillGpuTest, ForwardOnlyTeacherHoldsAFifthOfATrainingModel) {
  absl::StatusOr<JobConfig> job = ParseJobConfig(ModelToml(4), "teacher", {});
  ASSERT_TRUE(job.ok()) << job.status();
  absl::StatusOr<Model> fwd = Model::CreateForwardOnly(job->model, DType::kBF16, Device::kCuda);
  absl::StatusOr<Model> train = Model::Create(job->model, DType::kBF16, Device::kCuda);
  ASSERT_TRUE(fwd.ok()) << fwd.status();
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(fwd->param_dtype(), DType::kBF16);
  for (const Param& p : fwd->params()) EXPECT_FALSE(p.grad.defined()) << p.name;
  EXPECT_EQ(5 * fwd->ParamBytes(), train->ParamBytes());
  EXPECT_GE(fwd->ParamBytes(), 2 * fwd->NumParameters());
}

}  // namespace
}  // namespace baton
