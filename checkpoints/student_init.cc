// Student-from-teacher-layers mapping (see student_init.h).
#include "checkpoints/student_init.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

const char* Bool(bool b) { return b ? "true" : "false"; }

}  // namespace

std::vector<int> EvenlySpacedLayers(int teacher_layers, int student_layers) {
  BATON_CHECK(student_layers >= 1 && student_layers <= teacher_layers);
  std::vector<int> out;
  for (int i = 0; i < student_layers; ++i)
    out.push_back(static_cast<int>(static_cast<int64_t>(i) * teacher_layers / student_layers));
  return out;
}

absl::StatusOr<std::vector<int>> ResolveLayersFrom(const std::vector<int>& layers_from, int teacher_layers,
                                                   int student_layers) {
  if (layers_from.empty()) {
    if (student_layers > teacher_layers)
      return Bad("model.layers=", student_layers, " is more than the teacher's ", teacher_layers,
                 " (list student.layers_from to repeat teacher layers)");
    return EvenlySpacedLayers(teacher_layers, student_layers);
  }
  if (static_cast<int>(layers_from.size()) != student_layers)
    return Bad("student.layers_from has ", layers_from.size(), " entries [", absl::StrJoin(layers_from, ", "),
               "] but model.layers=", student_layers, " (one teacher layer per student layer)");
  for (size_t i = 0; i < layers_from.size(); ++i) {
    if (layers_from[i] < 0 || layers_from[i] >= teacher_layers)
      return Bad("student.layers_from[", i, "]=", layers_from[i], " is not a teacher layer (the teacher has ",
                 teacher_layers, ": 0..", teacher_layers - 1, ")");
  }
  return layers_from;
}

absl::Status CheckTeacherLayersFit(const ModelConfig& t, const ModelConfig& s) {
  const struct {
    const char* key;
    int student, teacher;
  } widths[] = {{"model.vocab_size", s.vocab_size, t.vocab_size}, {"model.dim", s.dim, t.dim},
                {"model.heads", s.heads, t.heads},                {"model.kv_heads", s.kv_heads, t.kv_heads},
                {"model.ffn_dim", s.ffn_dim, t.ffn_dim}};
  for (const auto& w : widths) {
    if (w.student != w.teacher)
      return Bad("student.init=teacher-layers: ", w.key, "=", w.student, " but the teacher's is ", w.teacher,
                 " (copied layers need equal widths)");
  }
  if (s.qkv_bias != t.qkv_bias)
    return Bad("student.init=teacher-layers: model.qkv_bias=", Bool(s.qkv_bias), " but the teacher's is ", Bool(t.qkv_bias));
  if (s.tie_embeddings != t.tie_embeddings)
    return Bad("student.init=teacher-layers: model.tie_embeddings=", Bool(s.tie_embeddings), " but the teacher's is ",
               Bool(t.tie_embeddings));
  return absl::OkStatus();
}

absl::StatusOr<CheckpointData> StudentFromTeacherLayers(const CheckpointData& teacher,
                                                        const ModelConfig& teacher_config,
                                                        const ModelConfig& student_config,
                                                        const std::vector<int>& layers_from) {
  BATON_RETURN_IF_ERROR(CheckTeacherLayersFit(teacher_config, student_config));
  BATON_ASSIGN_OR_RETURN(std::vector<int> from,
                         ResolveLayersFrom(layers_from, teacher_config.layers, student_config.layers));
  const std::string source = teacher.source.empty() ? "the teacher checkpoint" : teacher.source;
  CheckpointData out;
  auto copy = [&](const std::string& from_name, const std::string& to_name) -> absl::Status {
    const CheckpointTensor* t = teacher.Find(from_name);
    if (t == nullptr) return absl::NotFoundError(absl::StrCat(source, ": no tensor ", from_name, " to initialise ", to_name));
    out.tensors.push_back({to_name, t->tensor.Clone()});
    return absl::OkStatus();
  };
  BATON_RETURN_IF_ERROR(copy("params/embed", "params/embed"));
  const std::string layer_prefix = "params/layers.";
  for (int i = 0; i < student_config.layers; ++i) {
    const std::string src = absl::StrCat(layer_prefix, from[i], "."), dst = absl::StrCat(layer_prefix, i, ".");
    bool any = false;
    for (const CheckpointTensor& t : teacher.tensors) {
      if (t.name.rfind(src, 0) != 0) continue;
      BATON_RETURN_IF_ERROR(copy(t.name, dst + t.name.substr(src.size())));
      any = true;
    }
    if (!any) return absl::NotFoundError(absl::StrCat(source, ": no tensors ", src, "* for student layer ", i));
  }
  BATON_RETURN_IF_ERROR(copy("params/final_norm", "params/final_norm"));
  if (!student_config.tie_embeddings) BATON_RETURN_IF_ERROR(copy("params/lm_head", "params/lm_head"));
  return out;
}

}  // namespace baton
