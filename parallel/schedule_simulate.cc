// Simulate: the validator's lockstep execution with clocks. Because the
// schedule is validated first, the replay always finishes; each stage's
// clock only moves forward, and a receive's wait is the bubble it causes.
#include "parallel/schedule_simulate.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "parallel/schedule_validate.h"

namespace baton {

double Costs::CostOf(Op op) const {
  switch (op) {
    case Op::kForward: return forward;
    case Op::kBackward: return backward;
    case Op::kBackwardInput: return backward_input;
    case Op::kBackwardWeight: return backward_weight;
    default: return 0.0;
  }
}

absl::StatusOr<SimResult> Simulate(const Schedule& s, const ScheduleSpec& spec, const Costs& costs) {
  BATON_RETURN_IF_ERROR(ValidateSchedule(s, spec));
  const int p = spec.stages;
  SimResult r;
  r.busy.assign(p, 0.0);
  r.stage_bubble.assign(p, 0.0);
  r.peak_activations.assign(p, 0);
  r.peak_in_flight.assign(p, 0);
  r.timeline.assign(p, {});

  // Memory depends only on slot order, not on time.
  for (int st = 0; st < p; ++st) {
    int held = 0, in_flight = 0;
    for (const Action& a : s[st]) {
      if (a.op == Op::kForward && !spec.forward_only) ++held, ++in_flight;  // forward only keeps nothing
      if (a.op == Op::kBackward || a.op == Op::kBackwardInput) --held;
      if (a.op == Op::kBackward || a.op == Op::kBackwardWeight) --in_flight;
      r.peak_activations[st] = std::max(r.peak_activations[st], held);
      r.peak_in_flight[st] = std::max(r.peak_in_flight[st], in_flight);
    }
  }

  std::vector<int> pc(p, 0);
  std::vector<double> clock(p, 0.0);
  absl::flat_hash_map<MessageKey, double> arrival;
  for (bool progress = true; progress;) {
    progress = false;
    for (int st = 0; st < p; ++st) {
      while (pc[st] < static_cast<int>(s[st].size())) {
        const Action& a = s[st][pc[st]];
        if (a.op == Op::kRecvAct || a.op == Op::kRecvGrad) {
          auto it = arrival.find(MessageKeyOf(spec, st, a));
          if (it == arrival.end()) break;
          clock[st] = std::max(clock[st], it->second);
        } else if (a.op == Op::kSendAct || a.op == Op::kSendGrad) {
          arrival[MessageKeyOf(spec, st, a)] = clock[st] + costs.comm;
        } else {
          const double cost = costs.CostOf(a.op);
          r.timeline[st].push_back({a, clock[st], clock[st] + cost});
          clock[st] += cost;
          r.busy[st] += cost;
          r.makespan = std::max(r.makespan, clock[st]);
        }
        ++pc[st];
        progress = true;
      }
    }
  }
  for (int st = 0; st < p; ++st) BATON_CHECK(pc[st] == static_cast<int>(s[st].size()));

  double busy_total = 0;
  for (int st = 0; st < p; ++st) {
    busy_total += r.busy[st];
    r.stage_bubble[st] = r.makespan > 0 ? 1.0 - r.busy[st] / r.makespan : 0.0;
  }
  r.bubble = r.makespan > 0 ? 1.0 - busy_total / (p * r.makespan) : 0.0;
  return r;
}

std::string FormatTimeline(const SimResult& r, double tick) {
  BATON_CHECK(tick > 0);
  const size_t p = r.timeline.size();
  size_t width = 7;  // "stage N"
  for (const auto& line : r.timeline)
    for (const TimedAction& t : line) width = std::max(width, ToString(t.action).size());
  auto pad = [&](std::string s) {
    s.resize(std::max(s.size(), width), ' ');
    return s;
  };
  std::string out = "time ";
  for (size_t st = 0; st < p; ++st) absl::StrAppend(&out, " ", pad(absl::StrCat("stage ", st)));
  while (out.back() == ' ') out.pop_back();
  out += "\n";
  std::vector<size_t> next(p, 0);
  const int rows = static_cast<int>(r.makespan / tick + 0.5);
  for (int row = 0; row < rows; ++row) {
    const double mid = (row + 0.5) * tick;
    std::string line = absl::StrCat(std::string(row < 10 ? 3 : row < 100 ? 2 : row < 1000 ? 1 : 0, ' '), row, " ");
    for (size_t st = 0; st < p; ++st) {
      const auto& tl = r.timeline[st];
      while (next[st] < tl.size() && tl[next[st]].end <= mid) ++next[st];
      const bool busy = next[st] < tl.size() && tl[next[st]].start <= mid;
      absl::StrAppend(&line, " ", pad(busy ? ToString(tl[next[st]].action) : "."));
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace baton
