// The rules of a distillation job's config ([teacher], [distill],
// [student]; launcher/config.h has the fields): the ones that need only the
// config (ValidateDistillConfig, called by ValidateJobConfig for every job,
// so a train config with a bad [distill] is refused too), and the ones that
// need the teacher checkpoint's own config (CheckTeacherFitsStudent, called
// by `baton distill` after reading it). One line each, naming the key.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "launcher/config.h"
#include "runtime/model_config.h"

namespace baton {

absl::Status ValidateDistillConfig(const JobConfig& config);

// The student ([model] of `config`) and the teacher (`teacher`, from the
// checkpoint `path`) share one vocabulary, and with student.init =
// teacher-layers the widths match and layers_from names teacher layers.
absl::Status CheckTeacherFitsStudent(const JobConfig& config, const ModelConfig& teacher, const std::string& path);

}  // namespace baton
