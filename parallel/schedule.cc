// Schedule generators, the comm-insertion pass, and the action/grid printers.
// Each generator writes a compute-only order per stage (F, B or I/W); one
// pass, AddCommunication, then adds the sends and receives, so every
// generator gets the same, deadlock-free message placement for free.
#include "parallel/schedule.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

// ---- actions ----

bool IsCompute(Op op) {
  return op == Op::kForward || op == Op::kBackwardInput || op == Op::kBackwardWeight ||
         op == Op::kBackward;
}

bool IsComm(Op op) { return !IsCompute(op); }

const char* OpName(Op op) {
  switch (op) {
    case Op::kForward: return "F";
    case Op::kBackwardInput: return "I";
    case Op::kBackwardWeight: return "W";
    case Op::kBackward: return "B";
    case Op::kSendAct: return "SEND_F";
    case Op::kRecvAct: return "RECV_F";
    case Op::kSendGrad: return "SEND_B";
    case Op::kRecvGrad: return "RECV_B";
  }
  return "?";
}

std::string ToString(const Action& a) {
  std::string s = absl::StrCat(a.chunk, OpName(a.op), a.microbatch);
  if (a.peer >= 0 && (a.op == Op::kSendAct || a.op == Op::kSendGrad)) absl::StrAppend(&s, ">", a.peer);
  if (a.peer >= 0 && (a.op == Op::kRecvAct || a.op == Op::kRecvGrad)) absl::StrAppend(&s, "<", a.peer);
  return s;
}

namespace {

// Reads a non-negative decimal at text[*pos]; false if there is none.
bool ReadInt(std::string_view text, size_t* pos, int* out) {
  size_t start = *pos;
  long long v = 0;
  while (*pos < text.size() && std::isdigit(static_cast<unsigned char>(text[*pos]))) {
    v = v * 10 + (text[*pos] - '0');
    if (v > 1000000000) return false;
    ++*pos;
  }
  *out = static_cast<int>(v);
  return *pos > start;
}

}  // namespace

absl::StatusOr<Action> ParseAction(std::string_view text) {
  const std::string quoted = absl::StrCat("\"", std::string(text), "\"");
  size_t pos = 0;
  Action a{Op::kForward, 0, 0, -1};
  if (!ReadInt(text, &pos, &a.chunk)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ParseAction(", quoted, "): expected a chunk number first, as in \"0F3\""));
  }
  // Longest op names first: "SEND_F" before "F".
  static constexpr Op kOps[] = {Op::kSendAct, Op::kRecvAct, Op::kSendGrad, Op::kRecvGrad,
                                Op::kForward, Op::kBackwardInput, Op::kBackwardWeight, Op::kBackward};
  bool found = false;
  for (Op op : kOps) {
    std::string_view name = OpName(op);
    if (text.substr(pos, name.size()) == name) {
      a.op = op;
      pos += name.size();
      found = true;
      break;
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ParseAction(", quoted, "): unknown op at \"", std::string(text.substr(pos)),
        "\" (expected F, I, W, B, SEND_F, RECV_F, SEND_B or RECV_B)"));
  }
  if (!ReadInt(text, &pos, &a.microbatch)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ParseAction(", quoted, "): expected a micro-batch number after ", OpName(a.op)));
  }
  if (pos < text.size()) {
    const char want = (a.op == Op::kSendAct || a.op == Op::kSendGrad) ? '>' : '<';
    if (!IsComm(a.op) || text[pos] != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ParseAction(", quoted, "): unexpected \"", std::string(text.substr(pos)), "\"",
          IsComm(a.op) ? absl::StrCat(" (a ", OpName(a.op), " names its peer as ", std::string(1, want), "STAGE)")
                       : " (compute actions take no peer)"));
    }
    ++pos;
    if (!ReadInt(text, &pos, &a.peer) || pos != text.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ParseAction(", quoted, "): expected a peer stage number after ", std::string(1, want)));
    }
  }
  return a;
}

// ---- specs and layout ----

const char* ScheduleKindName(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kGPipe: return "gpipe";
    case ScheduleKind::k1F1B: return "1f1b";
    case ScheduleKind::kInterleaved1F1B: return "interleaved";
    case ScheduleKind::kZeroBubbleH1: return "zb-h1";
    case ScheduleKind::kZeroBubbleV: return "zb-v";
  }
  return "?";
}

absl::StatusOr<ScheduleKind> ParseScheduleKind(std::string_view name) {
  for (ScheduleKind k : {ScheduleKind::kGPipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved1F1B,
                         ScheduleKind::kZeroBubbleH1, ScheduleKind::kZeroBubbleV}) {
    if (name == ScheduleKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown schedule \"", std::string(name),
                                                 "\" (expected gpipe, 1f1b, interleaved, zb-h1 or zb-v)"));
}

std::string ToString(const ScheduleSpec& spec) {
  return absl::StrCat(spec.forward_only ? "forward " : "", ScheduleKindName(spec.kind), "(pp=", spec.stages, ", m=", spec.microbatches,
                      ", v=", spec.virtual_stages, ")");
}

int NumParts(const ScheduleSpec& spec) { return spec.stages * spec.virtual_stages; }

int ModelPart(const ScheduleSpec& spec, int stage, int chunk) {
  if (spec.kind == ScheduleKind::kZeroBubbleV) {
    return chunk == 0 ? stage : 2 * spec.stages - 1 - stage;
  }
  return chunk * spec.stages + stage;
}

PartLocation LocatePart(const ScheduleSpec& spec, int part) {
  const int p = spec.stages;
  if (spec.kind == ScheduleKind::kZeroBubbleV) {
    return part < p ? PartLocation{part, 0} : PartLocation{2 * p - 1 - part, 1};
  }
  return PartLocation{part % p, part / p};
}

MessageKey MessageKeyOf(const ScheduleSpec& spec, int stage, const Action& a) {
  BATON_CHECK(IsComm(a.op));
  const int k = ModelPart(spec, stage, a.chunk);
  switch (a.op) {
    case Op::kSendAct: return {false, a.microbatch, k};
    case Op::kRecvAct: return {false, a.microbatch, k - 1};
    case Op::kSendGrad: return {true, a.microbatch, k};
    default: return {true, a.microbatch, k + 1};  // kRecvGrad
  }
}

int ExpectedPeer(const ScheduleSpec& spec, int stage, const Action& a) {
  BATON_CHECK(IsComm(a.op));
  const int k = ModelPart(spec, stage, a.chunk);
  const bool to_next = a.op == Op::kSendAct || a.op == Op::kRecvGrad;
  const int other = to_next ? k + 1 : k - 1;
  if (other < 0 || other >= NumParts(spec)) return -1;
  return LocatePart(spec, other).stage;
}

// ---- generators ----

namespace {

Action F(int mb, int chunk) { return {Op::kForward, mb, chunk}; }
Action B(int mb, int chunk) { return {Op::kBackward, mb, chunk}; }
Action I(int mb, int chunk) { return {Op::kBackwardInput, mb, chunk}; }
Action W(int mb, int chunk) { return {Op::kBackwardWeight, mb, chunk}; }

// GPipe; with v > 1 it loops over chunks breadth-first (torch's LoopedBFS):
// every micro-batch through chunk 0, then chunk 1, ...; backward in reverse.
Schedule GPipe(const ScheduleSpec& spec) {
  Schedule s(spec.stages);
  for (int st = 0; st < spec.stages; ++st) {
    for (int c = 0; c < spec.virtual_stages; ++c)
      for (int mb = 0; mb < spec.microbatches; ++mb) s[st].push_back(F(mb, c));
    for (int c = spec.virtual_stages - 1; c >= 0; --c)
      for (int mb = 0; mb < spec.microbatches; ++mb) s[st].push_back(B(mb, c));
  }
  return s;
}

// 1F1B (PipeDream-flush, Narayanan et al. 2021 fig. 4 top): stage s runs
// p−1−s warm-up forwards, then alternates F and B, then drains the Bs. At
// most p−s micro-batches are in flight on stage s.
Schedule OneFOneB(const ScheduleSpec& spec) {
  const int p = spec.stages, m = spec.microbatches;
  Schedule s(p);
  for (int st = 0; st < p; ++st) {
    const int warmup = std::min(p - 1 - st, m);
    for (int i = 0; i < warmup; ++i) s[st].push_back(F(i, 0));
    for (int i = 0; i < m; ++i) {
      if (warmup + i < m) s[st].push_back(F(warmup + i, 0));
      s[st].push_back(B(i, 0));
    }
  }
  return s;
}

// Interleaved 1F1B (Megatron-LM, Narayanan et al. 2021 sec. 2.2): forwards
// go depth-first in groups of p micro-batches per chunk; backwards mirror
// them from the last chunk. Warm-up is 2(p−1−s) + (v−1)p forwards, or all
// of them when m == p (Megatron's rule).
Schedule Interleaved(const ScheduleSpec& spec) {
  const int p = spec.stages, m = spec.microbatches, v = spec.virtual_stages;
  const int total = m * v;
  // k-th forward (backward) of a stage: micro-batch and chunk.
  auto mb_of = [&](int k) { return (k / (p * v)) * p + k % p; };
  auto fwd_chunk = [&](int k) { return (k / p) % v; };
  auto bwd_chunk = [&](int k) { return v - 1 - (k / p) % v; };
  Schedule s(p);
  for (int st = 0; st < p; ++st) {
    int warmup = (m == p) ? total : std::min(2 * (p - 1 - st) + (v - 1) * p, total);
    for (int k = 0; k < warmup; ++k) s[st].push_back(F(mb_of(k), fwd_chunk(k)));
    for (int k = 0; k < total; ++k) {
      if (warmup + k < total) s[st].push_back(F(mb_of(warmup + k), fwd_chunk(warmup + k)));
      s[st].push_back(B(mb_of(k), bwd_chunk(k)));
    }
  }
  return s;
}

// ZB-H1 (Qi et al. 2023, fig. 3): 1F1B with each B split into I (on the
// critical path) and W (deferred). Stage s delays its W passes by s steady
// steps, so F-to-W in-flight count never exceeds p, 1F1B's stage-0 peak;
// the deferred Ws fill the cool-down bubble. Same order as torch's
// ScheduleInterleavedZeroBubble with one chunk.
Schedule ZeroBubbleH1(const ScheduleSpec& spec) {
  const int p = spec.stages, m = spec.microbatches;
  Schedule s(p);
  for (int st = 0; st < p; ++st) {
    const int warmup = std::min(p - 1 - st, m);
    int next_w = 0;
    for (int i = 0; i < warmup; ++i) s[st].push_back(F(i, 0));
    for (int i = 0; i < m; ++i) {
      if (warmup + i < m) s[st].push_back(F(warmup + i, 0));
      s[st].push_back(I(i, 0));
      if (i >= st) s[st].push_back(W(next_w++, 0));
    }
    while (next_w < m) s[st].push_back(W(next_w++, 0));
  }
  return s;
}

// ZB-V (Qi et al. 2023, sec. 6, fig. 8): two chunks per stage in a V, so
// stage s holds the parts s and 2p−1−s and the last stage also starts the
// backward. Built for max(m, 2p−1) micro-batches and trimmed to m, which
// keeps the order consistent (only actions of absent micro-batches go).
// Same phases as torch's ScheduleZBVZeroBubble.
Schedule ZeroBubbleV(const ScheduleSpec& spec) {
  const int p = spec.stages, m = spec.microbatches;
  const int n = std::max(m, 2 * p - 1);
  Schedule s(p);
  for (int st = 0; st < p; ++st) {
    std::vector<Action>& ops = s[st];
    int f0 = 0, f1 = 0, b0 = 0, b1 = 0;
    for (int i = 0; i < 2 * (p - st) - 1; ++i) ops.push_back(F(f0++, 0));
    for (int i = 0; i < st; ++i) {
      ops.push_back(F(f1++, 1));
      ops.push_back(F(f0++, 0));
    }
    for (int i = 0; i < p - st; ++i) {
      ops.push_back(F(f1++, 1));
      ops.push_back(I(b1, 1));
      ops.push_back(W(b1++, 1));
    }
    while (f1 < f0 || f0 < n) {
      if (f0 < n) ops.push_back(F(f0++, 0));
      ops.push_back(I(b0, 0));
      ops.push_back(W(b0++, 0));
      ops.push_back(F(f1++, 1));
      ops.push_back(I(b1, 1));
      ops.push_back(W(b1++, 1));
    }
    int w0 = b0, w1 = b1;
    for (int i = 0; i < st; ++i) {
      ops.push_back(I(b0++, 0));
      ops.push_back(I(b1++, 1));
    }
    for (int i = 0; i < p - st; ++i) {
      ops.push_back(I(b0++, 0));
      ops.push_back(W(w0++, 0));
    }
    while (w1 < b1) ops.push_back(W(w1++, 1));
    while (w0 < b0) ops.push_back(W(w0++, 0));
    BATON_CHECK(f0 == n && f1 == n && b0 == n && b1 == n && w0 == n && w1 == n);
    std::erase_if(ops, [m](const Action& a) { return a.microbatch >= m; });
  }
  return s;
}

// Forward only: each stage's chunks in model-part order, every micro-batch
// through one chunk before the next (no backward holds anything).
Schedule ForwardOnly(const ScheduleSpec& spec) {
  Schedule s(spec.stages);
  for (int st = 0; st < spec.stages; ++st) {
    std::vector<int> chunks;
    for (int c = 0; c < spec.virtual_stages; ++c) chunks.push_back(c);
    std::sort(chunks.begin(), chunks.end(),
              [&](int a, int b) { return ModelPart(spec, st, a) < ModelPart(spec, st, b); });
    for (int c : chunks)
      for (int mb = 0; mb < spec.microbatches; ++mb) s[st].push_back(F(mb, c));
  }
  return s;
}

absl::Status CheckSpec(const ScheduleSpec& spec) {
  const char* name = ScheduleKindName(spec.kind);
  if (spec.stages < 1)
    return absl::InvalidArgumentError(absl::StrCat(name, ": stages=", spec.stages, " must be >= 1"));
  if (spec.microbatches < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": microbatches=", spec.microbatches, " must be >= 1"));
  if (spec.virtual_stages < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": virtual_stages=", spec.virtual_stages, " must be >= 1"));
  const int v = spec.virtual_stages;
  switch (spec.kind) {
    case ScheduleKind::k1F1B:
    case ScheduleKind::kZeroBubbleH1:
      if (v != 1)
        return absl::InvalidArgumentError(absl::StrCat(
            name, " needs virtual_stages=1, got virtual_stages=", v,
            spec.kind == ScheduleKind::k1F1B ? " (use interleaved for v > 1)" : " (use zb-v for v = 2)"));
      break;
    case ScheduleKind::kZeroBubbleV:
      if (v != 2)
        return absl::InvalidArgumentError(
            absl::StrCat(name, " needs virtual_stages=2 (two chunks in a V), got virtual_stages=", v));
      break;
    case ScheduleKind::kInterleaved1F1B:
      if (v > 1 && !spec.forward_only && spec.microbatches % spec.stages != 0)
        return absl::InvalidArgumentError(absl::StrCat(
            name, " needs microbatches % stages == 0, got microbatches=", spec.microbatches,
            ", stages=", spec.stages, " (Megatron's rule for virtual_stages > 1)"));
      break;
    case ScheduleKind::kGPipe:
      break;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Schedule> BuildSchedule(const ScheduleSpec& spec) {
  BATON_RETURN_IF_ERROR(CheckSpec(spec));
  if (spec.forward_only) return AddCommunication(ForwardOnly(spec), spec);
  Schedule compute;
  switch (spec.kind) {
    case ScheduleKind::kGPipe: compute = GPipe(spec); break;
    case ScheduleKind::k1F1B: compute = OneFOneB(spec); break;
    case ScheduleKind::kInterleaved1F1B:
      compute = spec.virtual_stages == 1 ? OneFOneB(spec) : Interleaved(spec);
      break;
    case ScheduleKind::kZeroBubbleH1: compute = ZeroBubbleH1(spec); break;
    case ScheduleKind::kZeroBubbleV: compute = ZeroBubbleV(spec); break;
  }
  return AddCommunication(compute, spec);
}

Schedule AddCommunication(const Schedule& compute_only, const ScheduleSpec& spec) {
  const int parts = NumParts(spec);
  Schedule out(compute_only.size());
  for (size_t st = 0; st < compute_only.size(); ++st) {
    const int stage = static_cast<int>(st);
    for (const Action& a : compute_only[st]) {
      if (!IsCompute(a.op) || a.op == Op::kBackwardWeight) {
        out[st].push_back(a);
        continue;
      }
      const int k = ModelPart(spec, stage, a.chunk);
      const int prev = k > 0 ? LocatePart(spec, k - 1).stage : -1;
      const int next = k + 1 < parts ? LocatePart(spec, k + 1).stage : -1;
      const bool fwd = a.op == Op::kForward;
      // Forward: input from prev, output to next; backward: the reverse.
      const int from = fwd ? prev : next;
      const int to = fwd ? next : prev;
      if (from >= 0 && from != stage)
        out[st].push_back({fwd ? Op::kRecvAct : Op::kRecvGrad, a.microbatch, a.chunk, from});
      out[st].push_back(a);
      if (to >= 0 && to != stage)
        out[st].push_back({fwd ? Op::kSendAct : Op::kSendGrad, a.microbatch, a.chunk, to});
    }
  }
  return out;
}

Schedule ComputeOnly(const Schedule& schedule) {
  Schedule out(schedule.size());
  for (size_t st = 0; st < schedule.size(); ++st)
    for (const Action& a : schedule[st])
      if (IsCompute(a.op)) out[st].push_back(a);
  return out;
}

// ---- printing ----

std::string FormatScheduleGrid(const Schedule& schedule, const std::vector<SlotRef>& marks) {
  size_t rows = 0, width = 7;  // "stage N"
  for (const auto& ops : schedule) {
    rows = std::max(rows, ops.size());
    for (const Action& a : ops) width = std::max(width, ToString(a).size() + 2);
  }
  size_t shown = rows;
  if (!marks.empty()) {
    int last = 0;
    for (const SlotRef& r : marks) last = std::max(last, r.slot);
    shown = std::min(rows, static_cast<size_t>(last) + 4);
  }
  auto pad = [&](std::string s) {
    s.resize(std::max(s.size(), width), ' ');
    return s;
  };
  std::string out = "slot  ";
  for (size_t st = 0; st < schedule.size(); ++st) absl::StrAppend(&out, " ", pad(absl::StrCat("stage ", st)));
  while (out.back() == ' ') out.pop_back();
  out += "\n";
  for (size_t slot = 0; slot < shown; ++slot) {
    std::string row = absl::StrCat(std::string(slot < 10 ? 3 : slot < 100 ? 2 : slot < 1000 ? 1 : 0, ' '),
                                   slot, "  ");
    for (size_t st = 0; st < schedule.size(); ++st) {
      std::string cell;
      if (slot < schedule[st].size()) {
        const bool marked = std::any_of(marks.begin(), marks.end(), [&](const SlotRef& r) {
          return r.stage == static_cast<int>(st) && r.slot == static_cast<int>(slot);
        });
        const std::string label = ToString(schedule[st][slot]);
        cell = marked ? absl::StrCat("[", label, "]") : absl::StrCat(" ", label);
      }
      absl::StrAppend(&row, " ", pad(cell));
    }
    while (!row.empty() && row.back() == ' ') row.pop_back();
    absl::StrAppend(&out, row, "\n");
  }
  if (shown < rows) absl::StrAppend(&out, "  ... ", rows - shown, " more slots\n");
  return out;
}

}  // namespace baton
