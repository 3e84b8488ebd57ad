// ValidateSchedule: static checks per stage, message matching across
// stages, then a symbolic lockstep execution that finds deadlocks. Every
// failure message names the stage, the slot and the action, and carries
// the grid with that slot marked, the way torchtitan prints a bad step.
#include "parallel/schedule_validate.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {
namespace {

std::string At(int stage, int slot, const Action& a) {
  return absl::StrCat("stage ", stage, " slot ", slot, ": ", ToString(a));
}

absl::Status Fail(const Schedule& s, const ScheduleSpec& spec, const std::vector<SlotRef>& marks,
                  const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid schedule ", ToString(spec), ": ", what, "\n", FormatScheduleGrid(s, marks)));
}

// The action on the peer stage that completes the message `a` sends or
// receives: for "0SEND_F3>2" on stage 1 it is "xRECV_F3<1" on stage 2.
Action Counterpart(const ScheduleSpec& spec, int stage, const Action& a) {
  const MessageKey key = MessageKeyOf(spec, stage, a);
  const bool sending = a.op == Op::kSendAct || a.op == Op::kSendGrad;
  // Producer part key.part; the consumer is the next part (act) or previous (grad).
  const int consumer = key.gradient ? key.part - 1 : key.part + 1;
  const PartLocation other = LocatePart(spec, sending ? consumer : key.part);
  Op op = Op::kForward;
  switch (a.op) {
    case Op::kSendAct: op = Op::kRecvAct; break;
    case Op::kRecvAct: op = Op::kSendAct; break;
    case Op::kSendGrad: op = Op::kRecvGrad; break;
    default: op = Op::kSendGrad; break;  // kRecvGrad
  }
  return Action{op, a.microbatch, other.chunk, stage};
}

// Slots of the compute actions of one (stage, chunk, micro-batch).
struct ComputeSlots {
  std::vector<int> f, b, i, w;
};

using SendTable = absl::flat_hash_map<MessageKey, SlotRef>;

absl::Status CheckShape(const Schedule& s, const ScheduleSpec& spec) {
  const int p = spec.stages, m = spec.microbatches, v = spec.virtual_stages;
  if (p < 1 || m < 1 || v < 1 || (spec.kind == ScheduleKind::kZeroBubbleV && v != 2)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid schedule spec ", ToString(spec),
                                                   ": stages, microbatches and virtual_stages must be >= 1"
                                                   " (and virtual_stages = 2 for zb-v)"));
  }
  if (static_cast<int>(s.size()) != p) {
    return absl::InvalidArgumentError(absl::StrCat("invalid schedule ", ToString(spec), ": it has ",
                                                   s.size(), " stage lists, spec.stages = ", p));
  }

  return absl::OkStatus();
}

// 1. Ranges and peers.
absl::Status CheckRangesAndPeers(const Schedule& s, const ScheduleSpec& spec) {
  [[maybe_unused]] const int p = spec.stages, m = spec.microbatches, v = spec.virtual_stages,
                              parts = NumParts(spec);
  for (int st = 0; st < p; ++st) {
    for (int slot = 0; slot < static_cast<int>(s[st].size()); ++slot) {
      const Action& a = s[st][slot];
      const std::vector<SlotRef> here = {{st, slot}};
      if (a.microbatch < 0 || a.microbatch >= m)
        return Fail(s, spec, here, absl::StrCat(At(st, slot, a), " names micro-batch ", a.microbatch,
                                                ", outside 0..", m - 1));
      if (a.chunk < 0 || a.chunk >= v)
        return Fail(s, spec, here,
                    absl::StrCat(At(st, slot, a), " names chunk ", a.chunk, ", outside 0..", v - 1));
      if (IsCompute(a.op)) {
        if (a.peer != -1)
          return Fail(s, spec, here, absl::StrCat(At(st, slot, a), " has peer ", a.peer,
                                                  "; compute actions take no peer (-1)"));
        continue;
      }
      const int k = ModelPart(spec, st, a.chunk);
      const int want = ExpectedPeer(spec, st, a);
      if (want < 0)
        return Fail(s, spec, here,
                    absl::StrCat(At(st, slot, a), " has no counterpart: part ", k, " is the ",
                                 k == 0 ? "first" : "last", " of ", parts, " model parts"));
      if (want == st)
        return Fail(s, spec, here,
                    absl::StrCat(At(st, slot, a), " is a message to itself: the neighbouring part of part ", k,
                                 " is also on stage ", st, " (hand it over locally)"));
      if (a.peer != want)
        return Fail(s, spec, here, absl::StrCat(At(st, slot, a), " names peer ", a.peer,
                                                ", but the neighbouring part of part ", k, " is on stage ", want));
    }
  }

  return absl::OkStatus();
}

// 2. Each (micro-batch, chunk): one F and one B, or one F, one I and one W;
// one F and nothing else when the schedule is forward only.
absl::Status CheckComputeCounts(const Schedule& s, const ScheduleSpec& spec) {
  [[maybe_unused]] const int p = spec.stages, m = spec.microbatches, v = spec.virtual_stages,
                              parts = NumParts(spec);
  std::vector<std::vector<std::vector<ComputeSlots>>> slots(
      p, std::vector<std::vector<ComputeSlots>>(v, std::vector<ComputeSlots>(m)));
  for (int st = 0; st < p; ++st) {
    for (int slot = 0; slot < static_cast<int>(s[st].size()); ++slot) {
      const Action& a = s[st][slot];
      ComputeSlots& cs = slots[st][a.chunk][a.microbatch];
      switch (a.op) {
        case Op::kForward: cs.f.push_back(slot); break;
        case Op::kBackward: cs.b.push_back(slot); break;
        case Op::kBackwardInput: cs.i.push_back(slot); break;
        case Op::kBackwardWeight: cs.w.push_back(slot); break;
        default: break;
      }
    }
  }
  for (int st = 0; st < p; ++st) {
    for (int c = 0; c < v; ++c) {
      for (int mb = 0; mb < m; ++mb) {
        const ComputeSlots& cs = slots[st][c][mb];
        const std::string what = absl::StrCat("micro-batch ", mb, ", chunk ", c, " (model part ",
                                              ModelPart(spec, st, c), ") on stage ", st);
        for (const auto* list : {&cs.f, &cs.b, &cs.i, &cs.w}) {
          if (list->size() > 1) {
            const Action& a = s[st][(*list)[0]];
            return Fail(s, spec, {{st, (*list)[0]}, {st, (*list)[1]}},
                        absl::StrCat("duplicate ", ToString(a), " on stage ", st, " at slots ", (*list)[0],
                                     " and ", (*list)[1]));
          }
        }
        if (cs.f.empty()) return Fail(s, spec, {}, absl::StrCat("missing F of ", what));
        if (spec.forward_only) {
          for (const auto* list : {&cs.b, &cs.i, &cs.w}) {
            if (!list->empty())
              return Fail(s, spec, {{st, (*list)[0]}},
                          absl::StrCat(ToString(s[st][(*list)[0]]), " on stage ", st, " at slot ", (*list)[0],
                                       ": a forward-only schedule runs no backward"));
          }
          continue;
        }
        if (!cs.b.empty() && !cs.i.empty())
          return Fail(s, spec, {{st, cs.b[0]}, {st, cs.i[0]}},
                      absl::StrCat("both B (slot ", cs.b[0], ") and I (slot ", cs.i[0], ") for ", what,
                                   ": a backward is whole (B) or split (I then W)"));
        if (!cs.b.empty() && !cs.w.empty())
          return Fail(s, spec, {{st, cs.b[0]}, {st, cs.w[0]}},
                      absl::StrCat("both B (slot ", cs.b[0], ") and W (slot ", cs.w[0], ") for ", what,
                                   ": a backward is whole (B) or split (I then W)"));
        if (cs.b.empty() && cs.i.empty())
          return Fail(s, spec, {}, absl::StrCat("missing backward (B or I) of ", what));
        if (!cs.i.empty() && cs.w.empty())
          return Fail(s, spec, {{st, cs.i[0]}},
                      absl::StrCat("missing W of ", what, " (its I runs at slot ", cs.i[0], ")"));
      }
    }
  }

  return absl::OkStatus();
}

// 3. Messages: each sent once and received once. Fills `sends`.
absl::Status CheckMessages(const Schedule& s, const ScheduleSpec& spec, SendTable& sends) {
  [[maybe_unused]] const int p = spec.stages, m = spec.microbatches, v = spec.virtual_stages,
                              parts = NumParts(spec);
  SendTable recvs;
  for (int st = 0; st < p; ++st) {
    for (int slot = 0; slot < static_cast<int>(s[st].size()); ++slot) {
      const Action& a = s[st][slot];
      if (!IsComm(a.op)) continue;
      const bool sending = a.op == Op::kSendAct || a.op == Op::kSendGrad;
      auto& table = sending ? sends : recvs;
      auto [it, inserted] = table.try_emplace(MessageKeyOf(spec, st, a), SlotRef{st, slot});
      if (!inserted)
        return Fail(s, spec, {it->second, {st, slot}},
                    absl::StrCat("duplicate ", ToString(a), " on stage ", st, " at slots ", it->second.slot,
                                 " and ", slot));
    }
  }
  for (int st = 0; st < p; ++st) {  // in slot order, so the first failure is reproducible
    for (int slot = 0; slot < static_cast<int>(s[st].size()); ++slot) {
      const Action& a = s[st][slot];
      if (!IsComm(a.op)) continue;
      const bool sending = a.op == Op::kSendAct || a.op == Op::kSendGrad;
      if ((sending ? recvs : sends).contains(MessageKeyOf(spec, st, a))) continue;
      return Fail(s, spec, {{st, slot}},
                  absl::StrCat(At(st, slot, a), " has no matching ", ToString(Counterpart(spec, st, a)),
                               " on stage ", a.peer));
    }
  }

  return absl::OkStatus();
}

// 4. Per-stage order: everything an action consumes is produced before it.
absl::Status CheckStageOrder(const Schedule& s, const ScheduleSpec& spec) {
  [[maybe_unused]] const int p = spec.stages, m = spec.microbatches, v = spec.virtual_stages,
                              parts = NumParts(spec);
  for (int st = 0; st < p; ++st) {
    std::vector<std::vector<char>> f_done(v, std::vector<char>(m, 0)), bi_done = f_done,
        recv_act = f_done, recv_grad = f_done;
    for (int slot = 0; slot < static_cast<int>(s[st].size()); ++slot) {
      const Action& a = s[st][slot];
      const int c = a.chunk, mb = a.microbatch, k = ModelPart(spec, st, c);
      const std::vector<SlotRef> here = {{st, slot}};
      auto local = [&](Op op, PartLocation loc) { return ToString(Action{op, mb, loc.chunk}); };
      switch (a.op) {
        case Op::kForward:
          if (k > 0) {
            const PartLocation prev = LocatePart(spec, k - 1);
            if (prev.stage == st && !f_done[prev.chunk][mb])
              return Fail(s, spec, here,
                          absl::StrCat(At(st, slot, a), " runs before ", local(Op::kForward, prev),
                                       ", which computes its input on the same stage"));
            if (prev.stage != st && !recv_act[c][mb])
              return Fail(s, spec, here,
                          absl::StrCat(At(st, slot, a), " runs before its input arrives (no earlier ",
                                       ToString(Action{Op::kRecvAct, mb, c, prev.stage}), ")"));
          }
          f_done[c][mb] = 1;
          break;
        case Op::kBackward:
        case Op::kBackwardInput:
          if (!f_done[c][mb])
            return Fail(s, spec, here,
                        absl::StrCat(At(st, slot, a), " runs before its forward ", local(Op::kForward, {st, c})));
          if (k + 1 < parts) {
            const PartLocation next = LocatePart(spec, k + 1);
            if (next.stage == st && !bi_done[next.chunk][mb])
              return Fail(s, spec, here,
                          absl::StrCat(At(st, slot, a), " runs before the backward of chunk ", next.chunk,
                                       ", which computes its output gradient on the same stage"));
            if (next.stage != st && !recv_grad[c][mb])
              return Fail(s, spec, here,
                          absl::StrCat(At(st, slot, a), " runs before its output gradient arrives (no earlier ",
                                       ToString(Action{Op::kRecvGrad, mb, c, next.stage}), ")"));
          }
          bi_done[c][mb] = 1;
          break;
        case Op::kBackwardWeight:
          if (!bi_done[c][mb])
            return Fail(s, spec, here,
                        absl::StrCat(At(st, slot, a), " runs before ", local(Op::kBackwardInput, {st, c})));
          break;
        case Op::kSendAct:
          if (!f_done[c][mb])
            return Fail(s, spec, here,
                        absl::StrCat(At(st, slot, a), " sends before ", local(Op::kForward, {st, c}),
                                     " has computed it"));
          break;
        case Op::kSendGrad:
          if (!bi_done[c][mb])
            return Fail(s, spec, here,
                        absl::StrCat(At(st, slot, a), " sends before the backward of chunk ", c,
                                     " has computed it"));
          break;
        case Op::kRecvAct: recv_act[c][mb] = 1; break;
        case Op::kRecvGrad: recv_grad[c][mb] = 1; break;
      }
    }
  }

  return absl::OkStatus();
}

// 5. Deadlock: run every stage as far as it goes; a receive waits for its
// send, a send never waits (buffered). The fixpoint does not depend on the
// order stages are visited in.
absl::Status CheckDeadlock(const Schedule& s, const ScheduleSpec& spec, const SendTable& sends) {
  const int p = spec.stages;
  std::vector<int> pc(p, 0);
  absl::flat_hash_set<MessageKey> sent;
  for (bool progress = true; progress;) {
    progress = false;
    for (int st = 0; st < p; ++st) {
      while (pc[st] < static_cast<int>(s[st].size())) {
        const Action& a = s[st][pc[st]];
        if (a.op == Op::kRecvAct || a.op == Op::kRecvGrad) {
          if (!sent.contains(MessageKeyOf(spec, st, a))) break;
        } else if (a.op == Op::kSendAct || a.op == Op::kSendGrad) {
          sent.insert(MessageKeyOf(spec, st, a));
        }
        ++pc[st];
        progress = true;
      }
    }
  }
  std::vector<SlotRef> blocked;
  std::string waits;
  for (int st = 0; st < p; ++st) {
    if (pc[st] == static_cast<int>(s[st].size())) continue;
    const Action& a = s[st][pc[st]];
    BATON_CHECK(a.op == Op::kRecvAct || a.op == Op::kRecvGrad);  // only receives wait
    const SlotRef send = sends.at(MessageKeyOf(spec, st, a));
    blocked.push_back({st, pc[st]});
    absl::StrAppend(&waits, "\n  ", At(st, pc[st], a), " waits for ", ToString(s[send.stage][send.slot]),
                    " at stage ", send.stage, " slot ", send.slot);
  }
  if (!blocked.empty())
    return Fail(s, spec, blocked,
                absl::StrCat("deadlock: every unfinished stage waits on a receive whose send never runs",
                             waits));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSchedule(const Schedule& s, const ScheduleSpec& spec) {
  BATON_RETURN_IF_ERROR(CheckShape(s, spec));
  BATON_RETURN_IF_ERROR(CheckRangesAndPeers(s, spec));
  BATON_RETURN_IF_ERROR(CheckComputeCounts(s, spec));
  SendTable sends;
  BATON_RETURN_IF_ERROR(CheckMessages(s, spec, sends));
  BATON_RETURN_IF_ERROR(CheckStageOrder(s, spec));
  return CheckDeadlock(s, spec, sends);
}

}  // namespace baton
