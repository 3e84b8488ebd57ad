// Proves a pipeline schedule correct without running it: the executor and
// the launcher call ValidateSchedule before the first step, tests call it on
// every generated schedule. A schedule that passes runs every (micro-batch,
// chunk) forward and backward exactly once, in dependency order, and cannot
// hang: every send has exactly one receive and a symbolic execution of all
// stages (buffered sends, blocking receives) reaches the end of every list.
#pragma once

#include "absl/status/status.h"
#include "parallel/schedule.h"

namespace baton {

// Checks, in this order, returning the first failure as InvalidArgument with
// the slot × stage grid (FormatScheduleGrid) and the offending slots marked:
//   1. one action list per stage; micro-batch, chunk and peer in range, each
//      send/recv naming the stage that holds the neighbouring model part;
//   2. each (micro-batch, chunk) has exactly one F and either one B or one
//      I and one W;
//   3. each message (MessageKeyOf) is sent exactly once and received once;
//   4. on each stage, in slot order: F after its input (earlier RecvAct, or
//      the previous part's F when that part is local); B/I after the F of the
//      same chunk and after the output gradient (RecvGrad, or the next part's
//      backward when local); W after I; a send after the action producing it;
//   5. no deadlock: stages run in lockstep, a receive waiting until its send
//      has run, and all of them must finish.
absl::Status ValidateSchedule(const Schedule& schedule, const ScheduleSpec& spec);

}  // namespace baton
