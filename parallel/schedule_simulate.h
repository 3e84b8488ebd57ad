// Prices a pipeline schedule without running it: replays every stage's
// action list with per-action costs and message latency, honouring the same
// dependencies ValidateSchedule proves, and reports the step time, the
// bubble (idle fraction) and the peak activation memory per stage. The
// planner (`baton plan`) ranks layouts with it; tests pin the textbook
// bubble formulas with it; docs/schedules.md shows its timelines.
// Time is in arbitrary units; nothing here reads a clock.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/schedule.h"

namespace baton {

// Cost of one action on one (micro-batch, chunk), in time units. With
// virtual_stages v a chunk is 1/v of a stage, so pass costs per chunk
// (e.g. forward = 1/v) to compare with the v = 1 schedules.
struct Costs {
  double forward = 1.0;          // F
  double backward = 2.0;         // B, a whole backward (input and weight gradients)
  double backward_input = 1.0;   // I, the input-gradient half of a split backward
  double backward_weight = 1.0;  // W, the weight-gradient half
  double comm = 0.0;             // send-to-receive latency of one message; 0 = free
  double CostOf(Op op) const;    // 0 for send/recv: they take no compute time
};

struct TimedAction {
  Action action;
  double start;
  double end;
};

struct SimResult {
  double makespan = 0;             // step time: the last compute action's end, over all stages
  double bubble = 0;               // 1 − Σ busy / (stages · makespan)
  std::vector<double> busy;        // [stage] total compute time
  std::vector<double> stage_bubble;  // [stage] 1 − busy / makespan
  // Activation memory, in (micro-batch, chunk) units (a chunk is 1/v of a
  // stage's layers). Convention of the ZB paper: the stashed activations
  // are freed when the input-gradient backward (B, or I) runs; W keeps only
  // what it needs for the weight gradient, counted separately in
  // peak_in_flight (F run, backward not complete: no B or no W yet).
  std::vector<int> peak_activations;  // [stage]
  std::vector<int> peak_in_flight;    // [stage]
  std::vector<std::vector<TimedAction>> timeline;  // [stage] compute actions in slot order
};

// Runs ValidateSchedule first and returns its error; then replays: a compute
// action starts when its stage is free, a send stamps its message with
// (now + comm), a receive waits until its message has arrived.
absl::StatusOr<SimResult> Simulate(const Schedule& schedule, const ScheduleSpec& spec,
                                   const Costs& costs = {});

// The timeline as a time × stage grid, one row per `tick` time units, each
// cell the compute action running at the middle of the tick ("." = idle).
std::string FormatTimeline(const SimResult& result, double tick = 1.0);

}  // namespace baton
