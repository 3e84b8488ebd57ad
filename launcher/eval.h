// `baton eval`: how good a checkpoint is on a dataset's validation split,
// and how closely it follows a teacher. Figures, over the first
// batches × batch_size validation samples (the split and packing of
// runtime/sampler.h, as training's validation sees them):
//   val_loss    mean next-token cross-entropy (nats per token)
//   perplexity  exp(val_loss)
//   top1_acc    fraction of tokens whose argmax logit is the target
//   agreement   with --teacher: fraction of tokens where the argmax of the
//               model and of the teacher agree (and the teacher's own
//               val_loss and top1_acc)
// Usage:
//   baton eval --checkpoint CKPT --data PREFIX [--teacher CKPT2] [--batches N]
//              [--seq-len T] [--batch-size B] [--val-fraction F] [--device auto|cpu|cuda] [--json FILE]
// Defaults come from CKPT's own config: train.seq_len, train.micro_batch_size,
// data.val_fraction; --batches defaults to every whole batch of the split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace baton {

struct EvalOptions {
  std::string checkpoint;     // required
  std::string data;           // dataset prefix (PREFIX.bin + PREFIX.idx); required
  std::string teacher;        // a second checkpoint to compare with; "" = none
  int64_t batches = 0;        // 0 = every whole batch of the validation split
  int64_t seq_len = 0;        // 0 = the checkpoint's train.seq_len
  int64_t batch_size = 0;     // 0 = the checkpoint's train.micro_batch_size
  double val_fraction = -1;   // < 0 = the checkpoint's data.val_fraction
  std::string device = "auto";
  std::string json;           // write the figures as one JSON object here; "" = off
};

struct EvalFigures {
  double val_loss = 0, perplexity = 0, top1_acc = 0;
};

struct EvalResult {
  int64_t samples = 0, tokens = 0;
  EvalFigures model;
  bool has_teacher = false;
  EvalFigures teacher;
  double agreement = 0;  // top-1 agreement with the teacher
};

absl::StatusOr<EvalResult> Evaluate(const EvalOptions& options);

// argv after "eval"; prints the figures; the Status is the one-line error.
absl::Status RunEvalCommand(const std::vector<std::string>& args);

}  // namespace baton
