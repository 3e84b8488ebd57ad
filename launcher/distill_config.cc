// Distillation config rules (see distill_config.h).
#include "launcher/distill_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "checkpoints/student_init.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

}  // namespace

absl::Status ValidateDistillConfig(const JobConfig& c) {
  const DistillConfig& d = c.distill;
  if (!(d.alpha >= 0 && d.alpha <= 1)) return Bad("distill.alpha=", d.alpha, " must be in [0, 1]");
  if (!(d.temperature > 0) || !std::isfinite(d.temperature))
    return Bad("distill.temperature=", d.temperature, " must be > 0");
  if (d.mode == DistillMode::kOffline && d.logits_path.empty())
    return Bad("distill.mode=\"offline\" needs distill.logits_path (the directory baton distill --dump-teacher writes)");
  if (d.topk < 1) return Bad("distill.topk=", d.topk, " must be >= 1");
  if (d.mode == DistillMode::kOffline && d.topk > c.model.vocab_size)  // the default 64 may exceed a tiny vocabulary
    return Bad("distill.topk=", d.topk, " must be in [1, model.vocab_size=", c.model.vocab_size, "]");
  const StudentConfig& s = c.student;
  if (s.init == StudentInit::kTeacherLayers && c.teacher.checkpoint.empty())
    return Bad("student.init=\"teacher-layers\" needs teacher.checkpoint");
  if (!s.layers_from.empty() && s.init != StudentInit::kTeacherLayers)
    return Bad("student.layers_from is set but student.init=\"", StudentInitName(s.init),
               "\" (it applies to student.init=\"teacher-layers\")");
  if (!s.layers_from.empty() && static_cast<int>(s.layers_from.size()) != c.model.layers)
    return Bad("student.layers_from has ", s.layers_from.size(), " entries but model.layers=", c.model.layers,
               " (one teacher layer per student layer)");
  for (size_t i = 0; i < s.layers_from.size(); ++i) {
    if (s.layers_from[i] < 0) return Bad("student.layers_from[", i, "]=", s.layers_from[i], " must be >= 0");
  }
  return absl::OkStatus();
}

absl::Status CheckTeacherFitsStudent(const JobConfig& c, const ModelConfig& teacher, const std::string& path) {
  if (teacher.vocab_size != c.model.vocab_size)
    return Bad("model.vocab_size=", c.model.vocab_size, " but teacher.checkpoint ", path, " has model.vocab_size=",
               teacher.vocab_size, " (the student must share the teacher's vocabulary and tokenizer)");
  if (c.student.init != StudentInit::kTeacherLayers) return absl::OkStatus();
  absl::Status fit = CheckTeacherLayersFit(teacher, c.model);
  if (!fit.ok()) return Bad(fit.message(), " (teacher.checkpoint ", path, ")");
  absl::Status layers = ResolveLayersFrom(c.student.layers_from, teacher.layers, c.model.layers).status();
  if (!layers.ok()) return Bad(layers.message(), " (teacher.checkpoint ", path, ")");
  return absl::OkStatus();
}

}  // namespace baton
