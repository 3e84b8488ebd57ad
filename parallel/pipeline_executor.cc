// PipelineExecutor: the interpreter of one stage's action list. Buffers are
// keyed by the MessageKey of the tensor they hold, whether it arrived from a
// peer or was produced here (a local hand-off between two chunks of this
// stage uses the same key), so producer and consumer meet in one map:
//   F(mb, part k):  reads act(mb, k−1), writes act(mb, k)
//   B/I(mb, k):     reads grad(mb, k+1), writes grad(mb, k)
//   end of backward (B, or W): act(mb, k−1) and grad(mb, k+1) go back to the pool
//   forward-only schedule: act(mb, k−1) goes back to the pool when F returns
//   SEND_*:         moves the buffer to the pending sends (pool at step end)
#include "parallel/pipeline_executor.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "parallel/schedule_validate.h"

namespace baton {

absl::Status StageWork::BackwardInput(int mb, int chunk, const Tensor*, Tensor*) {
  return absl::UnimplementedError(absl::StrCat(
      "this StageWork has no split backward (BackwardInput); use a schedule with whole B (gpipe, 1f1b, "
      "interleaved), not zb-h1 or zb-v"));
}

absl::Status StageWork::BackwardWeight(int mb, int chunk) {
  return absl::UnimplementedError(absl::StrCat(
      "this StageWork has no split backward (BackwardWeight); use a schedule with whole B (gpipe, 1f1b, "
      "interleaved), not zb-h1 or zb-v"));
}

absl::StatusOr<int> PipelineMessageTag(const ScheduleSpec& spec, const MessageKey& key) {
  const int64_t parts = NumParts(spec);
  const int64_t tags = 2 * static_cast<int64_t>(spec.microbatches) * parts;
  if (tags > int64_t{kMaxCommTag} + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline message tags: 2·microbatches·parts = 2·", spec.microbatches, "·", parts, " = ", tags,
        " do not fit in the ", kMaxCommTag + 1, " tags a communicator guarantees (", ToString(spec),
        "; use fewer micro-batches or virtual stages)"));
  }
  if (key.microbatch < 0 || key.microbatch >= spec.microbatches || key.part < 0 || key.part >= parts) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline message tag: micro-batch ", key.microbatch,
                                                   " or part ", key.part, " outside ", ToString(spec)));
  }
  return static_cast<int>((key.microbatch * parts + key.part) * 2 + (key.gradient ? 1 : 0));
}

namespace {

// "F3.0": op, micro-batch, chunk (the trace's event names).
std::string ComputeName(const Action& a) { return absl::StrCat(OpName(a.op), a.microbatch, ".", a.chunk); }

std::string KeyName(const MessageKey& k) {
  return absl::StrCat(k.gradient ? "gradient" : "activation", " of micro-batch ", k.microbatch, ", part ",
                      k.part);
}

std::string AuxName(const Action& a) { return absl::StrCat(a.chunk, "A", a.microbatch); }

absl::Status WithContext(const absl::Status& st, const std::string& where, const std::string& action) {
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat(where, ", ", action, ": ", st.message()));
}

}  // namespace

PipelineExecutor::PipelineExecutor(const Schedule& schedule, const ScheduleSpec& spec, int stage,
                                   Communicator& pp, TraceRecorder* trace, PipelineExecutorOptions options,
                                   int rank)
    : schedule_(schedule),
      spec_(spec),
      stage_(stage),
      rank_(rank),
      parts_(NumParts(spec)),
      pp_(pp),
      trace_(trace),
      options_(options) {
  if (options_.allocator == nullptr) options_.allocator = DefaultCpuAllocator();
}

PipelineExecutor::~PipelineExecutor() = default;

std::string PipelineExecutor::Where() const {
  return rank_ >= 0 ? absl::StrCat("rank ", rank_, ", pipeline stage ", stage_) : absl::StrCat("pipeline stage ", stage_);
}

// ---- validation ----

absl::Status PipelineExecutor::Validate() {
  if (stage_ < 0 || stage_ >= spec_.stages) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline executor: stage ", stage_, " outside 0..", spec_.stages - 1, " of ", ToString(spec_)));
  }
  if (pp_.size() != spec_.stages || pp_.rank() != stage_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline executor: the pp communicator is rank ", pp_.rank(), " of ", pp_.size(),
        " but the executor runs stage ", stage_, " of ", ToString(spec_), " (they must agree)"));
  }
  if (options_.recv_lookahead < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline executor: recv_lookahead = ", options_.recv_lookahead, " must be >= 0"));
  }
  // Tags first: a schedule too large for them is refused before the (costlier) proof.
  BATON_RETURN_IF_ERROR(PipelineMessageTag(spec_, MessageKey{false, 0, 0}).status());
  BATON_RETURN_IF_ERROR(ValidateSchedule(schedule_, spec_));

  const std::vector<Action>& list = schedule_[stage_];
  const int n = static_cast<int>(list.size());
  std::vector<int> compute_slots;
  for (int i = 0; i < n; ++i) {
    if (IsCompute(list[i].op)) compute_slots.push_back(i);
  }
  lookahead_slot_.assign(n, -1);
  for (size_t j = 0; j < compute_slots.size(); ++j) {
    const size_t ahead = j + static_cast<size_t>(options_.recv_lookahead);
    lookahead_slot_[compute_slots[j]] = ahead < compute_slots.size() ? compute_slots[ahead] - 1 : n - 1;
  }
  return absl::OkStatus();
}

// ---- buffers ----

Tensor PipelineExecutor::Acquire(const Shape& shape, DType dtype) {
  for (size_t i = 0; i < free_.size(); ++i) {
    if (free_[i].shape() == shape && free_[i].dtype() == dtype) {
      Tensor t = std::move(free_[i]);
      free_[i] = std::move(free_.back());
      free_.pop_back();
      return t;
    }
  }
  ++buffers_allocated_;
  return Tensor::Empty(shape, dtype, options_.allocator);
}

void PipelineExecutor::ReleaseKey(const MessageKey& key) {
  auto it = buffers_.find(key);
  BATON_CHECK_MSG(it != buffers_.end() && it->second.recv == nullptr, "releasing a buffer not in use");
  free_.push_back(std::move(it->second.tensor));
  buffers_.erase(it);
}

absl::StatusOr<Tensor> PipelineExecutor::Take(const MessageKey& key) {
  auto it = buffers_.find(key);
  if (it == buffers_.end()) {
    return absl::InternalError(absl::StrCat("the ", KeyName(key), " it needs was neither received nor produced "
                                            "(a schedule the validator should have refused)"));
  }
  Buffer& b = it->second;
  if (b.recv != nullptr) {
    TraceRecorder::Scope scope(trace_, absl::StrCat("wait ", ToString(*b.from)), "comm");
    absl::Status st = b.recv->Wait();
    b.recv.reset();
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat("waiting for ", ToString(*b.from), ": ", st.message()));
  }
  return b.tensor;
}

absl::Status PipelineExecutor::PostReceive(StageWork& work, int slot) {
  const Action& a = schedule_[stage_][slot];
  posted_[slot] = true;
  const MessageKey key = MessageKeyOf(spec_, stage_, a);
  BATON_ASSIGN_OR_RETURN(const int tag, PipelineMessageTag(spec_, key));
  if (buffers_.contains(key)) {
    return absl::InternalError(absl::StrCat("the ", KeyName(key), " is already here"));
  }
  const Shape shape = a.op == Op::kRecvAct ? work.InputShape(a.microbatch, a.chunk)
                                           : work.OutputShape(a.microbatch, a.chunk);
  Buffer b;
  b.tensor = Acquire(shape, work.activation_dtype());
  b.from = &a;
  absl::StatusOr<CommRequestPtr> req = pp_.IRecv(b.tensor, a.peer, tag);
  if (!req.ok()) {
    free_.push_back(std::move(b.tensor));
    return WithContext(req.status(), Where(), ToString(a));
  }
  b.recv = *std::move(req);
  buffers_.emplace(key, std::move(b));
  return absl::OkStatus();
}

absl::Status PipelineExecutor::PostReceivesThrough(StageWork& work, int last) {
  const std::vector<Action>& list = schedule_[stage_];
  for (; next_post_ <= last && next_post_ < static_cast<int>(list.size()); ++next_post_) {
    const Op op = list[next_post_].op;
    if ((op == Op::kRecvAct || op == Op::kRecvGrad) && !posted_[next_post_]) {
      BATON_RETURN_IF_ERROR(PostReceive(work, next_post_));
    }
  }
  return absl::OkStatus();
}

// ---- one action ----

absl::Status PipelineExecutor::SendTensor(const Action& a) {
  const MessageKey key = MessageKeyOf(spec_, stage_, a);
  BATON_ASSIGN_OR_RETURN(const int tag, PipelineMessageTag(spec_, key));
  auto it = buffers_.find(key);
  if (it == buffers_.end()) {
    return absl::InternalError(absl::StrCat("nothing produced the ", KeyName(key), " to send"));
  }
  BATON_ASSIGN_OR_RETURN(CommRequestPtr req, pp_.ISend(it->second.tensor, a.peer, tag));
  sends_.push_back(PendingSend{std::move(it->second.tensor), std::move(req), &a});
  buffers_.erase(it);
  return absl::OkStatus();
}

absl::Status PipelineExecutor::RunForward(StageWork& work, const Action& a) {
  const int mb = a.microbatch, c = a.chunk;
  const int k = ModelPart(spec_, stage_, c);
  const bool first = k == 0, last = k == parts_ - 1;
  const MessageKey act_in{false, mb, k - 1}, act_out{false, mb, k};
  Tensor input, output;
  if (!first) {
    BATON_ASSIGN_OR_RETURN(input, Take(act_in));
  }
  if (work.HasAuxForward()) {
    TraceRecorder::Scope scope(trace_, trace_ != nullptr ? absl::StrCat("A", mb, ".", c) : std::string(), "compute");
    absl::Status st = work.ForwardAux(mb, c);
    if (!st.ok()) return WithContext(st, Where(), AuxName(a));
  }
  if (!last) output = Acquire(work.OutputShape(mb, c), work.activation_dtype());
  {
    TraceRecorder::Scope scope(trace_, trace_ != nullptr ? ComputeName(a) : std::string(), "compute");
    absl::Status st = work.Forward(mb, c, first ? nullptr : &input, last ? nullptr : &output);
    if (!st.ok()) {
      if (!last) free_.push_back(std::move(output));
      return st;
    }
  }
  if (!last) buffers_.emplace(act_out, Buffer{std::move(output), nullptr, nullptr});
  if (spec_.forward_only && !first) ReleaseKey(act_in);  // no backward will read it
  return absl::OkStatus();
}

absl::Status PipelineExecutor::RunBackward(StageWork& work, const Action& a) {
  const int mb = a.microbatch, c = a.chunk;
  const int k = ModelPart(spec_, stage_, c);
  const bool first = k == 0, last = k == parts_ - 1;
  const MessageKey act_in{false, mb, k - 1}, grad_in{true, mb, k}, grad_out{true, mb, k + 1};
  if (a.op == Op::kBackward || a.op == Op::kBackwardInput) {
    Tensor grad_output, grad_input;
    if (!last) {
      BATON_ASSIGN_OR_RETURN(grad_output, Take(grad_out));
    }
    if (!first) grad_input = Acquire(work.InputShape(mb, c), work.activation_dtype());
    {
      TraceRecorder::Scope scope(trace_, trace_ != nullptr ? ComputeName(a) : std::string(), "compute");
      const Tensor* go = last ? nullptr : &grad_output;
      Tensor* gi = first ? nullptr : &grad_input;
      absl::Status st = a.op == Op::kBackward ? work.Backward(mb, c, go, gi) : work.BackwardInput(mb, c, go, gi);
      if (!st.ok()) {
        if (!first) free_.push_back(std::move(grad_input));
        return st;
      }
    }
    if (!first) buffers_.emplace(grad_in, Buffer{std::move(grad_input), nullptr, nullptr});
    if (a.op == Op::kBackwardInput) return absl::OkStatus();  // W still needs input and grad_output
  } else {
    TraceRecorder::Scope scope(trace_, trace_ != nullptr ? ComputeName(a) : std::string(), "compute");
    BATON_RETURN_IF_ERROR(work.BackwardWeight(mb, c));
  }
  // The backward of (mb, chunk) is complete: its input and output gradient are free.
  if (!first) ReleaseKey(act_in);
  if (!last) ReleaseKey(grad_out);
  return absl::OkStatus();
}

absl::Status PipelineExecutor::Execute(StageWork& work, int slot) {
  const Action& a = schedule_[stage_][slot];
  switch (a.op) {
    case Op::kRecvAct:
    case Op::kRecvGrad:
      return posted_[slot] ? absl::OkStatus() : PostReceive(work, slot);
    case Op::kSendAct:
    case Op::kSendGrad:
      return SendTensor(a);
    case Op::kForward:
      return RunForward(work, a);
    case Op::kBackward:
    case Op::kBackwardInput:
    case Op::kBackwardWeight:
      return RunBackward(work, a);
  }
  return absl::InternalError("unknown action");
}

// ---- the step ----

absl::Status PipelineExecutor::RunActions(StageWork& work) {
  const std::vector<Action>& list = schedule_[stage_];
  for (int slot = 0; slot < static_cast<int>(list.size()); ++slot) {
    if (IsCompute(list[slot].op)) {
      BATON_RETURN_IF_ERROR(PostReceivesThrough(work, lookahead_slot_[slot]));
    }
    absl::Status st = Execute(work, slot);
    // An aux forward's error already names its action.
    if (!st.ok() && !absl::StartsWith(st.message(), Where())) return WithContext(st, Where(), ToString(list[slot]));
    BATON_RETURN_IF_ERROR(st);
  }
  {
    TraceRecorder::Scope scope(sends_.empty() ? nullptr : trace_, "wait sends", "comm");
    for (PendingSend& s : sends_) {
      BATON_RETURN_IF_ERROR(WithContext(s.request->Wait(), Where(), ToString(*s.action)));
      s.request.reset();
      free_.push_back(std::move(s.tensor));
    }
    sends_.clear();
  }
  if (!buffers_.empty()) {
    std::string left;
    for (const auto& [key, b] : buffers_) absl::StrAppend(&left, left.empty() ? "" : "; ", KeyName(key));
    return absl::InternalError(
        absl::StrCat(Where(), ": buffers still held at the end of the step: ", left));
  }
  return absl::OkStatus();
}

void PipelineExecutor::Abort() {
  // A pending receive is cancelled by its request's destructor. A pending
  // send is abandoned, not waited: its receiver may never come, and a wait
  // would turn this error into a hang. The request keeps its buffer alive.
  for (PendingSend& s : sends_) {
    if (s.request != nullptr) static_cast<void>(s.request.release());
  }
  sends_.clear();
  buffers_.clear();
}

absl::Status PipelineExecutor::RunStep(StageWork& work) {
  if (!validated_) {
    validation_ = Validate();
    validated_ = true;
  }
  if (!validation_.ok()) return validation_;
  posted_.assign(schedule_[stage_].size(), false);
  next_post_ = 0;
  absl::Status st = RunActions(work);
  if (!st.ok()) Abort();
  return st;
}

}  // namespace baton
