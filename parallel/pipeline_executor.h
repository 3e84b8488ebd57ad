// Runs one stage's part of a pipeline schedule (schedule.h): interprets the
// stage's action list in order, calling the model through StageWork for
// F/B/I/W and moving activations and gradients to the neighbouring stages
// with non-blocking sends and receives, so communication overlaps compute.
// The executor knows nothing of models: the training driver implements
// StageWork for its stage's layers; tests implement it with a toy.
//
// How it runs a step (RunStep):
//   - receives are posted (IRecv) when their slot is reached, or earlier:
//     up to `recv_lookahead` compute actions ahead, so a message can land
//     while the stage computes; a compute action waits only for the
//     receives it consumes;
//   - sends are ISend; their requests are waited at the end of the step
//     (a mid-step wait could block on a receiver that has not posted yet;
//     the communicator has no non-blocking test);
//   - every message travels with tag PipelineMessageTag(spec, MessageKeyOf):
//     a send and its receive agree without talking.
// Buffers: every activation and gradient buffer comes from a pool owned by
// the executor and returns to it, so after the first step a step allocates
// nothing (buffers_allocated() stops growing).
// Invariant: before the first step the schedule is proven by
// ValidateSchedule, so an executor never hangs on a schedule that could
// deadlock or that drops a message; it returns the validator's error.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "runtime/tensor.h"

namespace baton {

// The model side of one pipeline stage: the chunks (model parts) this stage
// holds. (mb, chunk) are a micro-batch and a stage-local chunk, as in Action;
// ModelPart(spec, stage, chunk) is the part. All activations of the step have
// one dtype (activation_dtype); their shapes may depend on (mb, chunk).
//
// Lifetimes the executor guarantees (so an implementation need not copy):
// `input` of Forward(mb, chunk) and `grad_output` of Backward/BackwardInput
// keep their contents until the backward of (mb, chunk) is complete (B
// returned, or W returned for a split backward). `output` and `grad_input`
// are uninitialised buffers the call must fill; the executor owns them.
class StageWork {
 public:
  virtual ~StageWork() = default;

  // Shape of the activation entering chunk `chunk` (the previous part's
  // output), and so of the gradient this chunk's backward writes for it.
  // Not asked for the first model part.
  virtual Shape InputShape(int mb, int chunk) = 0;
  // Shape of this chunk's output activation (and of the gradient it
  // receives for it). Not asked for the last model part.
  virtual Shape OutputShape(int mb, int chunk) = 0;
  virtual DType activation_dtype() const { return DType::kF32; }

  // input: null on the first model part (the data loader feeds it);
  // output: null on the last part (it computes the loss instead). Under a
  // forward-only schedule (ScheduleSpec::forward_only) no backward follows
  // and `input` lives only until Forward returns.
  virtual absl::Status Forward(int mb, int chunk, const Tensor* input, Tensor* output) = 0;
  // A second model's forward on the same micro-batch, run just before each
  // Forward(mb, chunk) (a distillation teacher: its logits for the
  // student's loss; it reads the micro-batch, not the pipeline's tensors).
  // Traced as "A{mb}.{chunk}", reported in errors as "{chunk}A{mb}". Called
  // only when HasAuxForward() (the default: no second model).
  virtual bool HasAuxForward() const { return false; }
  virtual absl::Status ForwardAux(int mb, int chunk) { return absl::OkStatus(); }
  // Whole backward: input and weight gradients. grad_output: null on the
  // last part (the loss gradient is the stage's own); grad_input: null on
  // the first part.
  virtual absl::Status Backward(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input) = 0;
  // Split backward (zero-bubble schedules): BackwardInput writes grad_input
  // only; BackwardWeight(mb, chunk) later accumulates the weight gradients.
  // Defaults return Unimplemented, for models that only run B schedules.
  virtual absl::Status BackwardInput(int mb, int chunk, const Tensor* grad_output, Tensor* grad_input);
  virtual absl::Status BackwardWeight(int mb, int chunk);
};

// The tag of a message: (microbatch · parts + part) · 2 + gradient, in
// [0, 2·microbatches·parts). InvalidArgument when that does not fit under
// kMaxCommTag + 1 = 32768 (the message names microbatches and parts).
absl::StatusOr<int> PipelineMessageTag(const ScheduleSpec& spec, const MessageKey& key);

struct PipelineExecutorOptions {
  // Receives are posted while the stage is up to this many compute actions
  // before the action that consumes them; 0 = when the receive's slot is
  // reached. More overlaps more and holds more receive buffers early.
  int recv_lookahead = 2;
  // Where activation buffers live; null = DefaultCpuAllocator(). Must match
  // the communicator's device.
  Allocator* allocator = nullptr;
};

class PipelineExecutor {
 public:
  // `schedule` is the whole schedule (every stage's list: validation needs
  // them all; it is copied); this executor runs schedule[stage]. `pp` is the pipeline
  // group: size spec.stages, rank `stage`. `trace` (may be null) receives
  // one "compute" event per F/B/I/W ("F3.0": op, micro-batch, chunk) and
  // "comm" events for the time spent waiting on receives and sends.
  // Nothing is checked here; the first RunStep validates. `rank` (world
  // rank; -1 = not known) is named in errors: "rank 3, pipeline stage 1, 0F3: ...".
  PipelineExecutor(const Schedule& schedule, const ScheduleSpec& spec, int stage, Communicator& pp,
                   TraceRecorder* trace = nullptr, PipelineExecutorOptions options = {}, int rank = -1);
  ~PipelineExecutor();
  PipelineExecutor(const PipelineExecutor&) = delete;
  PipelineExecutor& operator=(const PipelineExecutor&) = delete;

  // Runs this stage's actions for one step. The first call validates
  // (ValidateSchedule, stage and pp size, tags fit) and every later call
  // returns the same error if that failed; no action runs on an invalid
  // schedule. A StageWork or communicator error ends the step with the
  // error, prefixed by the rank, stage and action ("rank 3, pipeline stage
  // 1, 0F3: ..."; "0A3" for the aux forward before 0F3);
  // pending receives are then cancelled and pending sends abandoned (never
  // waited: their receiver may be gone, and a wait would turn the error
  // into a hang). Run no further step after an error: the job is over.
  absl::Status RunStep(StageWork& work);

  // Activation/gradient buffers allocated so far (each is kept for reuse).
  int64_t buffers_allocated() const { return buffers_allocated_; }
  int stage() const { return stage_; }
  const ScheduleSpec& spec() const { return spec_; }

 private:
  struct Buffer {
    Tensor tensor;
    CommRequestPtr recv;    // non-null while a receive into `tensor` may be pending
    const Action* from = nullptr;  // the receive action, for trace names and errors
  };
  struct PendingSend {
    Tensor tensor;
    CommRequestPtr request;
    const Action* action;  // the send, for errors
  };

  absl::Status Validate();
  absl::Status RunForward(StageWork& work, const Action& a);
  absl::Status RunBackward(StageWork& work, const Action& a);
  absl::Status SendTensor(const Action& a);
  std::string Where() const;  // "rank 3, pipeline stage 1" 
  absl::Status RunActions(StageWork& work);
  absl::Status Execute(StageWork& work, int slot);
  absl::Status PostReceive(StageWork& work, int slot);
  // Posts every receive not yet posted in slots [0, last].
  absl::Status PostReceivesThrough(StageWork& work, int last);
  // The buffer of `key`, its receive waited for. NotFound is a bug the
  // validator should have caught.
  absl::StatusOr<Tensor> Take(const MessageKey& key);
  Tensor Acquire(const Shape& shape, DType dtype);
  void ReleaseKey(const MessageKey& key);
  void Abort();  // drops every pending request and buffer after an error

  Schedule schedule_;
  ScheduleSpec spec_;
  int stage_;
  int rank_;
  int parts_;
  Communicator& pp_;
  TraceRecorder* trace_;
  PipelineExecutorOptions options_;

  bool validated_ = false;
  absl::Status validation_;
  std::vector<int> lookahead_slot_;  // [slot] last slot whose receives are posted before it runs
  std::vector<bool> posted_;         // [slot] this receive is posted (reset every step)
  int next_post_ = 0;                // first slot not yet scanned for receives

  absl::flat_hash_map<MessageKey, Buffer> buffers_;  // live activations/gradients of this step
  std::vector<PendingSend> sends_;                   // waited at the end of the step
  std::vector<Tensor> free_;                         // the pool
  int64_t buffers_allocated_ = 0;
};

}  // namespace baton
