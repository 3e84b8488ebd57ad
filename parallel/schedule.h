// Pipeline schedules as plain data: one list of Actions per stage.
// Generators (BuildSchedule) write them, ValidateSchedule
// (schedule_validate.h) proves them complete and deadlock-free without
// running anything, Simulate (schedule_simulate.h) prices them, and the
// executor only interprets them. Actions print and parse as torchtitan's
// "2F0" (chunk 2, forward, micro-batch 0), so a schedule can be written by
// hand in a test and read in an error message.
// Invariant of every generated schedule: each (micro-batch, chunk) runs F,
// then its backward (B, or I then W when split) exactly once, on the stage
// that holds the chunk, with every message sent once and received once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baton {

// ---- actions ----

enum class Op : uint8_t {
  kForward,         // "F": forward of one (micro-batch, chunk)
  kBackwardInput,   // "I": input-gradient half of a split backward
  kBackwardWeight,  // "W": weight-gradient half of a split backward
  kBackward,        // "B": whole backward (input and weight gradients)
  kSendAct,         // "SEND_F": send this chunk's output activation to `peer`
  kRecvAct,         // "RECV_F": receive this chunk's input activation from `peer`
  kSendGrad,        // "SEND_B": send the gradient of this chunk's input to `peer`
  kRecvGrad,        // "RECV_B": receive the gradient of this chunk's output from `peer`
};

// One step of one stage. `chunk` is the stage-local chunk index
// (0 <= chunk < virtual_stages); ModelPart() maps it to the model part.
// For a send/recv, (microbatch, chunk) name the local F or backward that
// produces or consumes the tensor, and `peer` the other stage; compute
// actions have peer -1.
struct Action {
  Op op;
  int microbatch;
  int chunk;
  int peer = -1;

  friend bool operator==(const Action&, const Action&) = default;
};

using Schedule = std::vector<std::vector<Action>>;  // [stage][slot]

bool IsCompute(Op op);  // F, I, W, B
bool IsComm(Op op);     // SEND_*/RECV_*
const char* OpName(Op op);  // "F", "I", "W", "B", "SEND_F", "RECV_F", "SEND_B", "RECV_B"

// "{chunk}{op}{microbatch}", plus ">{peer}" on a send and "<{peer}" on a
// receive: "0F3", "1I2", "0W2", "0B5", "1SEND_F3>2", "0RECV_B4<1".
std::string ToString(const Action& a);
// Inverse of ToString. The peer suffix is optional (peer stays -1).
absl::StatusOr<Action> ParseAction(std::string_view text);

// ---- specs and layout ----

enum class ScheduleKind : uint8_t {
  kGPipe,             // all F, then all B; with v > 1 loops over chunks (LoopedBFS)
  k1F1B,              // PipeDream-flush / Megatron non-interleaved; v = 1
  kInterleaved1F1B,   // Megatron interleaved (Narayanan et al. 2021); v >= 1
  kZeroBubbleH1,      // ZB-H1 (Qi et al. 2023, fig. 3): B split into I and W; v = 1
  kZeroBubbleV,       // ZB-V (Qi et al. 2023, sec. 6): V-shaped layout; v = 2
};

// Config names, as parallel.schedule spells them: "gpipe", "1f1b",
// "interleaved", "zb-h1", "zb-v".
const char* ScheduleKindName(ScheduleKind kind);
absl::StatusOr<ScheduleKind> ParseScheduleKind(std::string_view name);

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::k1F1B;
  int stages = 1;          // pipeline stages p (ranks on the pipeline axis)
  int microbatches = 1;    // micro-batches m per step
  int virtual_stages = 1;  // chunks v per stage; 1 = one contiguous part per stage
  // Forward only (validation, inference prefill, a teacher's pass): every
  // (micro-batch, chunk) runs F once and no backward; `kind` still fixes
  // the part layout (ModelPart). The executor frees a forward's input as
  // soon as the F returns.
  bool forward_only = false;
};

std::string ToString(const ScheduleSpec& spec);  // "1f1b(pp=4, m=8, v=1)", "forward 1f1b(pp=4, m=8, v=1)"

// The model is cut into stages·virtual_stages parts, run in order
// 0, 1, ..., parts−1. Chunk c of stage s is part c·p + s (Megatron's
// layout), except ZB-V: chunk 0 is part s and chunk 1 is part 2p−1−s.
int NumParts(const ScheduleSpec& spec);
int ModelPart(const ScheduleSpec& spec, int stage, int chunk);
struct PartLocation {
  int stage;
  int chunk;
};
PartLocation LocatePart(const ScheduleSpec& spec, int part);

// One point-to-point message, named by what it carries: the output
// activation of `part` (gradient = false) or the gradient of the input of
// `part` (gradient = true), for one micro-batch. A send and the receive that
// matches it have the same key; the executor may use it as a tag.
struct MessageKey {
  bool gradient;
  int microbatch;
  int part;  // the producing part

  friend bool operator==(const MessageKey&, const MessageKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const MessageKey& k) {
    return H::combine(std::move(h), k.gradient, k.microbatch, k.part);
  }
};
// Precondition: IsComm(a.op), chunk and microbatch in range.
MessageKey MessageKeyOf(const ScheduleSpec& spec, int stage, const Action& a);
// The stage a comm action on `stage` must name as its peer, or -1 when the
// message does not exist (sending past the last part, receiving before the
// first). It equals `stage` when both parts live there (a local hand-off
// that needs no message).
int ExpectedPeer(const ScheduleSpec& spec, int stage, const Action& a);

// ---- generators ----

// The complete program of every stage, compute and communication. With
// spec.forward_only every stage runs its chunks in model-part order, each
// over every micro-batch (the forward half of GPipe / LoopedBFS). Errors
// (InvalidArgument) name the spec field and the rule, e.g.
// "interleaved needs microbatches % stages == 0, got microbatches=6, stages=4".
absl::StatusOr<Schedule> BuildSchedule(const ScheduleSpec& spec);

// Inserts, around each compute action of a compute-only schedule, the
// receives it needs (just before) and the sends it owes (just after). Sends
// are buffered, so this placement is deadlock-free whenever the compute order
// is. Comm actions already in the input are copied as they are; none is
// added for a local hand-off (consecutive parts on one stage).
Schedule AddCommunication(const Schedule& compute_only, const ScheduleSpec& spec);

// The schedule without its send/recv actions.
Schedule ComputeOnly(const Schedule& schedule);

// ---- printing ----

struct SlotRef {
  int stage;
  int slot;
};
// A slot × stage grid, one row per slot, one column per stage; marked slots
// print as "[0F3]". With marks, rows past the last marked slot + 3 are
// elided. Used by docs and by every validation error.
std::string FormatScheduleGrid(const Schedule& schedule, const std::vector<SlotRef>& marks = {});

}  // namespace baton
