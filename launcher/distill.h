// `baton distill --config FILE [--set K=V]... [--dump-teacher]`: the
// distillation job driver: the training driver (launcher/train.h) with
// DriverExtras. Online (distill.mode = online) the teacher runs beside the
// student on the pipeline mesh (engine/stage_teacher.h); offline the
// teacher's top-k logits come from the dump of --dump-teacher
// (checkpoints/teacher_logits.h, written by one process). Every rank reads
// the teacher's config and checks it against the student ([teacher]
// [distill] [student] rules); the driver loads the teacher's slices,
// initialises the student (random or teacher-layers) on a fresh start, and
// reports loss, kl and ce per step and, at each validation, the student's
// top-1 accuracy and its top-1 agreement with the teacher (launcher/eval.h).
// Checkpoints and resume are the training driver's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "launcher/config.h"
#include "launcher/train.h"
#include "runtime/model.h"

namespace baton {

struct DumpSummary {
  int64_t samples = 0, tokens = 0, shards = 0;
};

// Runs `teacher` over every training sample of config.data.path (the
// sampler's split and packing for train.seq_len and data.val_fraction), in
// batches of train.micro_batch_size, and writes the top distill.topk
// logits per token at distill.temperature into distill.logits_path.
absl::StatusOr<DumpSummary> DumpTeacherLogits(const JobConfig& config, Model& teacher);

// What the train driver needs to distill (every rank calls it; the name
// is historical, offline mode too): the teacher's config read from
// teacher.checkpoint and checked against the student, the loss options,
// the student's first params for student.init = teacher-layers, the top-1
// figures at each validation (launcher/eval.h on the checkpoint just
// written, against the teacher), and offline the dump's reader, checked
// against the job (CheckTeacherLogitsFit).
absl::StatusOr<DriverExtras> OnlineDistillExtras(const JobConfig& config);

// argv after "distill"; returns the exit status (prints the one-line error).
int RunDistillCommand(const std::vector<std::string>& args);

}  // namespace baton
