// Student initialisation from teacher layers (checkpoints/student_init.h):
// the default mapping is evenly spaced; every student parameter is the
// bits of its teacher parameter; the result loads into a student Model
// with nothing missing or extra; width and vocabulary mismatches and bad
// layers_from are refused in one line naming both values.
#include "checkpoints/student_init.h"

#include <cstring>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelConfig Config(int layers, bool tied = false) {
  ModelConfig c;
  c.layers = layers;
  c.dim = 32;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 48;
  c.vocab_size = 61;
  c.tie_embeddings = tied;
  return c;
}

CheckpointData TeacherCheckpoint(const ModelConfig& c) {
  absl::StatusOr<Model> m = Model::Create(c, DType::kF32);
  EXPECT_TRUE(m.ok());
  m->Init(3);
  CheckpointData data;
  for (const Param& p : m->params()) data.tensors.push_back({"params/" + p.name, p.value.Clone()});
  data.tensors.push_back({"adam/m/embed", m->params()[0].value.Clone()});  // not params: ignored
  return data;
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(StudentInit, EvenlySpacedLayers) {
  EXPECT_THAT(EvenlySpacedLayers(8, 4), ElementsAre(0, 2, 4, 6));
  EXPECT_THAT(EvenlySpacedLayers(12, 5), ElementsAre(0, 2, 4, 7, 9));
  EXPECT_THAT(EvenlySpacedLayers(3, 3), ElementsAre(0, 1, 2));
  EXPECT_THAT(EvenlySpacedLayers(7, 1), ElementsAre(0));
}

TEST(StudentInit, EveryStudentParamIsItsTeacherParamAndLoads) {
  for (bool tied : {false, true}) {
    const ModelConfig tc = Config(6, tied), sc = Config(3, tied);
    const CheckpointData teacher = TeacherCheckpoint(tc);
    for (const std::vector<int>& from : {std::vector<int>{}, std::vector<int>{5, 1, 1}}) {
      absl::StatusOr<CheckpointData> student = StudentFromTeacherLayers(teacher, tc, sc, from);
      ASSERT_TRUE(student.ok()) << student.status();
      const std::vector<int> map = from.empty() ? std::vector<int>{0, 2, 4} : from;
      // Loads into a student model: every param present, nothing extra.
      absl::StatusOr<Model> m = Model::Create(sc, DType::kF32);
      ASSERT_TRUE(m.ok());
      std::set<std::string> names;
      for (Param& p : m->params()) {
        ASSERT_TRUE(CopyInto(*student, "params/" + p.name, p.value).ok()) << p.name;
        names.insert("params/" + p.name);
      }
      EXPECT_EQ(names.size(), student->tensors.size());
      for (const CheckpointTensor& t : student->tensors) {
        std::string src = t.name;
        if (src.rfind("params/layers.", 0) == 0) {
          const size_t dot = src.find('.', 14);
          const int layer = std::stoi(src.substr(14, dot - 14));
          src = "params/layers." + std::to_string(map[layer]) + src.substr(dot);
        }
        ASSERT_NE(teacher.Find(src), nullptr) << src;
        EXPECT_TRUE(SameBits(t.tensor, teacher.Find(src)->tensor)) << t.name << " <- " << src;
      }
      // The mapping is not the identity: student layer 1 differs from teacher layer 1 by default.
      if (from.empty()) {
        EXPECT_FALSE(SameBits(student->Find("params/layers.1.attn.wq")->tensor,
                              teacher.Find("params/layers.1.attn.wq")->tensor));
      }
    }
  }
}

TEST(StudentInit, MismatchesAreRefusedNamingBothValues) {
  const ModelConfig tc = Config(4);
  const CheckpointData teacher = TeacherCheckpoint(tc);
  ModelConfig sc = Config(2);
  sc.vocab_size = 64;
  absl::Status s = StudentFromTeacherLayers(teacher, tc, sc, {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.vocab_size=64 but the teacher's is 61"));
  sc = Config(2);
  sc.dim = 64;
  sc.heads = 8;
  EXPECT_THAT(StudentFromTeacherLayers(teacher, tc, sc, {}).status().message(),
              HasSubstr("model.dim=64 but the teacher's is 32"));
  sc = Config(2, /*tied=*/true);
  EXPECT_THAT(StudentFromTeacherLayers(teacher, tc, sc, {}).status().message(), HasSubstr("model.tie_embeddings"));
  sc = Config(2);
  EXPECT_THAT(StudentFromTeacherLayers(teacher, tc, sc, {0, 4}).status().message(),
              HasSubstr("student.layers_from[1]=4 is not a teacher layer (the teacher has 4: 0..3)"));
  EXPECT_THAT(StudentFromTeacherLayers(teacher, tc, sc, {0, 1, 2}).status().message(),
              HasSubstr("student.layers_from has 3 entries"));
  EXPECT_THAT(StudentFromTeacherLayers(teacher, tc, Config(5), {}).status().message(),
              HasSubstr("model.layers=5 is more than the teacher's 4"));
  CheckpointData broken = teacher;
  broken.tensors.erase(broken.tensors.begin());  // params/embed
  EXPECT_EQ(StudentFromTeacherLayers(broken, tc, sc, {}).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace baton
