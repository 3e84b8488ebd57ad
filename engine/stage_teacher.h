// The distillation teacher's share of one pipeline stage (online mode): a
// forward-only Model per chunk, cut into the same number of parts as the
// student (teacher part k on the ranks of student part k, tensor-parallel
// over the same tp group), no optimizer state. The Stage runs the teacher's
// chunk from StageWork::ForwardAux, just before the student's forward of the
// same micro-batch; the teacher's activation between parts travels beside
// the student's as its own message (tags above the executor's range), sent
// before the student's forward and so always posted before the receiver,
// which has already received the student's activation sent after it, asks
// for it: no new ordering constraint on any schedule. On the last part the
// teacher's logits of each micro-batch wait for the student's head loss.
// The teacher is loaded like a checkpoint (RankTrainer::LoadTeacher) into
// forward-only Models (Model::CreateForwardOnly): no gradient buffers, no
// optimizer state, and on CUDA with bf16 compute only the bf16 weights (no
// f32 masters): a third of a training model's parameter memory there.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/engine_config.h"
#include "parallel/communicator.h"
#include "parallel/schedule.h"
#include "runtime/model.h"
#include "runtime/tensor_parallel.h"

namespace baton {

class StageTeacher {
 public:
  // The teacher chunks of pipeline stage `stage` under `spec` (the student's
  // schedule); weights zero until loaded. `pp` must outlive it.
  static absl::StatusOr<std::unique_ptr<StageTeacher>> Create(const EngineConfig& config, const ScheduleSpec& spec,
                                                              int stage, Communicator& pp, TensorParallel tp);

  std::vector<Model*> models();  // [chunk]
  // Bytes of parameter state the teacher's chunks hold on this rank.
  int64_t ParamBytes() const;
  // "teacher memory: 12.0 MiB of bf16 weights on pipeline stage 0 (forward only: no grads, ...)"
  std::string MemoryReport() const;

  // Teacher chunk `chunk` on micro-batch mb (tokens (B, T)): receives the
  // previous part's teacher activation, runs the part, sends its output to
  // the next part, or on the head part keeps the logits for TakeLogits(mb).
  absl::Status Forward(int mb, int chunk, const Tensor& tokens);
  // The teacher's (N, V_local) logits of mb, handed over once.
  absl::StatusOr<Tensor> TakeLogits(int mb);
  // End of a step: waits for the sends, and nothing may be left behind.
  absl::Status FinishStep();

 private:
  StageTeacher(const EngineConfig& config, const ScheduleSpec& spec, int stage, Communicator& pp)
      : config_(config), spec_(spec), stage_(stage), pp_(pp) {}
  absl::StatusOr<int> Tag(int mb, int part) const;
  Tensor Staged(const Shape& shape) const;  // a device (or CPU) buffer in the compute dtype

  EngineConfig config_;
  ScheduleSpec spec_;
  int stage_;
  Communicator& pp_;
  int64_t rows_divisor_ = 1;  // tp under sequence parallelism
  std::vector<Model> chunks_;
  struct PendingSend {
    Tensor host;
    CommRequestPtr request;
  };
  std::vector<PendingSend> sends_;
  absl::flat_hash_map<int64_t, Tensor> local_;   // (mb, part) -> activation, when both parts are here
  absl::flat_hash_map<int, Tensor> logits_;      // mb -> teacher logits (head part)
};

}  // namespace baton
