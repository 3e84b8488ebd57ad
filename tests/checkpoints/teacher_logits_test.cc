// Teacher top-k logit shards (checkpoints/teacher_logits.h): a dump written
// in appends that span shards reads back bit for bit for any sample ids;
// the offline loss from the read-back rows equals the in-memory one; an
// unfinished dump leaves no index and no temporary file and is refused;
// misuse and mismatched jobs are one-line errors naming the key.
#include "checkpoints/teacher_logits.h"

#include <cstring>
#include <filesystem>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TeacherLogitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("baton_teacher_logits_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static TeacherLogitsMeta Meta() {
    TeacherLogitsMeta m;
    m.topk = 4;
    m.temperature = 2.0;
    m.vocab_size = 29;
    m.seq_len = 3;
    m.num_samples = 10;
    m.samples_per_shard = 4;  // shards of 4, 4 and 2 samples
    m.dataset = "/data/corpus";
    m.dataset_tokens = 1234;
    m.val_fraction = 0.05;
    return m;
  }
  // Full teacher logits of all samples, (10·3, 29) f32, and their top-k.
  void MakeLogits() {
    std::mt19937_64 rng(41);
    std::normal_distribution<float> g(0.f, 2.f);
    logits_ = Tensor::Empty({30, 29}, DType::kF32);
    for (int64_t i = 0; i < logits_.numel(); ++i) logits_.data<float>()[i] = g(rng);
    top_ = *TeacherTopKOf(logits_, 4, 2.0);
  }
  absl::Status Dump(int64_t samples_to_write) {
    BATON_ASSIGN_OR_RETURN(std::unique_ptr<TeacherLogitsWriter> w, TeacherLogitsWriter::Create(dir_.string(), Meta()));
    for (int64_t s = 0; s < samples_to_write; s += 3) {  // appends of 3 samples cross shard boundaries
      const int64_t c = std::min<int64_t>(3, samples_to_write - s);
      BATON_RETURN_IF_ERROR(w->Append(top_.values.Slice(s * 3, c * 3).Clone(), top_.indices.Slice(s * 3, c * 3).Clone(),
                                      top_.rest_lse.Slice(s * 3, c * 3).Clone()));
    }
    return w->Finish();
  }

  fs::path dir_;
  Tensor logits_;
  TeacherTopK top_;
};

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST_F(TeacherLogitsTest, RoundTripsAnySampleIdsAcrossShards) {
  MakeLogits();
  ASSERT_TRUE(Dump(10).ok());
  EXPECT_TRUE(fs::exists(dir_ / "shard_00002.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "shard_00003.h5"));
  absl::StatusOr<std::unique_ptr<TeacherLogitsReader>> r = TeacherLogitsReader::Open(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->meta(), Meta());
  const std::vector<int64_t> ids = {9, 0, 5, 4, 3};
  absl::StatusOr<TeacherTopK> got = (*r)->Read(ids);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->temperature, 2.0);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(SameBits(got->values.Slice(i * 3, 3), top_.values.Slice(ids[i] * 3, 3).Clone())) << "sample " << ids[i];
    EXPECT_TRUE(SameBits(got->indices.Slice(i * 3, 3), top_.indices.Slice(ids[i] * 3, 3).Clone()));
    EXPECT_TRUE(SameBits(got->rest_lse.Slice(i * 3, 3), top_.rest_lse.Slice(ids[i] * 3, 3).Clone()));
  }
  // The offline loss of the read-back rows is the in-memory one.
  std::mt19937_64 rng(42);
  std::normal_distribution<float> g(0.f, 1.f);
  Tensor student = Tensor::Empty({3, 29}, DType::kF32), y = Tensor::Empty({3}, DType::kI32);
  for (int64_t i = 0; i < student.numel(); ++i) student.data<float>()[i] = g(rng);
  for (int r = 0; r < 3; ++r) y.data<int32_t>()[r] = 7 * r + 1;
  absl::StatusOr<TeacherTopK> one = (*r)->Read({5});
  TeacherTopK mem{top_.values.Slice(15, 3).Clone(), top_.indices.Slice(15, 3).Clone(), top_.rest_lse.Slice(15, 3).Clone(), 2.0};
  EXPECT_EQ(OfflineDistillLoss(student, *one, y, {0.5, 2.0}, 1.0, nullptr)->loss,
            OfflineDistillLoss(student, mem, y, {0.5, 2.0}, 1.0, nullptr)->loss);
  EXPECT_THAT((*r)->Read({10}).status().message(), HasSubstr("sample 10 is outside the 10 dumped"));
}

TEST_F(TeacherLogitsTest, AnUnfinishedDumpLeavesNothingReadable) {
  MakeLogits();
  absl::Status s = Dump(6);  // Finish refuses: 6 of 10 samples
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("6 of 10 samples written"));
  EXPECT_FALSE(fs::exists(dir_ / "index.json"));
  EXPECT_FALSE(fs::exists(dir_ / "shard_00001.h5.tmp"));  // the open shard was removed with the writer
  absl::StatusOr<std::unique_ptr<TeacherLogitsReader>> r = TeacherLogitsReader::Open(dir_.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("--dump-teacher"));
}

TEST_F(TeacherLogitsTest, MisuseAndMismatchesAreOneLineErrors) {
  MakeLogits();
  ASSERT_TRUE(Dump(10).ok());
  EXPECT_EQ(TeacherLogitsWriter::Create(dir_.string(), Meta()).status().code(), absl::StatusCode::kAlreadyExists);
  fs::remove_all(dir_);
  std::unique_ptr<TeacherLogitsWriter> w = *TeacherLogitsWriter::Create(dir_.string(), Meta());
  EXPECT_THAT(w->Append(top_.values.Slice(0, 2).Clone(), top_.indices.Slice(0, 2).Clone(),
                        top_.rest_lse.Slice(0, 2).Clone()).message(),
              HasSubstr("Append wants"));
  EXPECT_THAT(w->Append(top_.values, top_.indices, top_.rest_lse).ok(), true);
  EXPECT_THAT(w->Append(top_.values.Slice(0, 3), top_.indices.Slice(0, 3), top_.rest_lse.Slice(0, 3)).message(),
              HasSubstr("11 samples appended, the dump covers 10"));
  TeacherLogitsMeta want = Meta();
  EXPECT_TRUE(CheckTeacherLogitsFit(Meta(), want, "d").ok());
  want.seq_len = 4;
  EXPECT_THAT(CheckTeacherLogitsFit(Meta(), want, "d").message(),
              HasSubstr("dumped with train.seq_len=3 but the job has train.seq_len=4"));
  want = Meta();
  want.temperature = 1.0;
  EXPECT_THAT(CheckTeacherLogitsFit(Meta(), want, "d").message(), HasSubstr("distill.temperature=2"));
  want = Meta();
  want.dataset_tokens = 99;
  EXPECT_THAT(CheckTeacherLogitsFit(Meta(), want, "d").message(), HasSubstr("1234 tokens"));
}

}  // namespace
}  // namespace baton
