// The planner's time model (see plan_time.h). Op shapes follow
// runtime/transformer_layer.cc: separate wq, wk, wv projections, a fused
// SwiGLU, flash-style attention; a backward is each GEMM twice (input and
// weight gradient) plus the attention backward.
#include "launcher/plan_time.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/transformer_layer.h"

namespace baton {
namespace {

struct Work {
  double f = 0;       // forward
  double bi = 0;      // input-gradient half of the backward (incl. recompute)
  double bw = 0;      // weight-gradient half
  double comm = 0;    // tp collectives inside f + bi
};

double Gemm(const HardwareProfile& hw, int64_t m, int64_t n, int64_t k) {
  return 2.0 * m * n * k / (hw.GemmTflops(m, n, k) * 1e12);
}

double AllReduce(const LinkProfile& link, int ranks, double bytes) {
  if (ranks <= 1) return 0;
  return 2.0 * (ranks - 1) / ranks * bytes / (link.bus_gbs * 1e9) + 2.0 * (ranks - 1) * link.latency_us * 1e-6;
}

// One decoder layer on one micro-batch, by mode.
Work LayerWork(const ModelConfig& m, const PlanLayout& l, int64_t seq, const HardwareProfile& hw, LayerMode mode,
               const LinkProfile& tp_link) {
  const int64_t B = l.micro_batch, T = seq, N = B * T, C = m.dim, D = m.head_dim();
  const int64_t H = m.heads / l.tp, KV = m.kv_heads / l.tp, F = m.ffn_dim / l.tp, HD = H * D, KVD = KV * D;
  const double e = hw.device == Device::kCpu ? 4 : DTypeSize(hw.compute);
  const double mem = hw.memory_gbs * 1e9 / hw.pointwise_passes;
  const double d_factor = D >= 128 ? 1.0 : D <= 64 ? hw.attention_d64 : hw.attention_d64 + (1 - hw.attention_d64) * (D - 64) / 64.0;
  const double att_flops = 2.0 * B * H * double(T) * T * D;

  const double g_q = Gemm(hw, N, HD, C), g_kv = 2 * Gemm(hw, N, KVD, C), g_o = Gemm(hw, N, C, HD);
  const double g_mlp = 2 * Gemm(hw, N, F, C) + Gemm(hw, N, C, F);
  const double att_f = att_flops / (hw.attention_fwd_tflops * d_factor * 1e12);
  const double att_b = 2.5 * att_flops / (hw.attention_bwd_tflops * d_factor * 1e12);
  const double resid = l.sequence_parallel ? double(C) / l.tp : C;
  const double pw_f = N * (9 * resid + 2.0 * (HD + KVD) + 3.0 * F) * e / mem;
  const double ar = 2 * AllReduce(tp_link, l.tp, double(N) * C * e);  // after wo and after w_down

  Work w;
  w.f = g_q + g_kv + g_o + g_mlp + att_f + pw_f + ar;
  w.bi = g_q + g_kv + g_o + g_mlp + att_b + 2 * pw_f + ar;
  w.bw = g_q + g_kv + g_o + g_mlp;
  w.comm = 2 * ar;
  if (mode == LayerMode::kRecompute) {
    w.bi += w.f;
    w.comm += ar;
  } else if (mode == LayerMode::kSelective) {  // norms, k, v, RoPE of k, swi
    w.bi += g_kv + N * (6 * resid + 2.0 * KVD + 3.0 * F) * e / mem;
  }
  return w;
}

// The lm head and loss (last part) or the embedding (first part).
Work EndsWork(const ModelConfig& m, const PlanLayout& l, int64_t seq, const HardwareProfile& hw,
              const PartLayers& part, const LinkProfile& tp_link) {
  const int64_t N = int64_t{l.micro_batch} * seq, C = m.dim, V = m.vocab_size / l.tp;
  const double e = hw.device == Device::kCpu ? 4 : DTypeSize(hw.compute);
  const double mem = hw.memory_gbs * 1e9 / hw.pointwise_passes;
  Work w;
  if (part.head) {
    const double g = Gemm(hw, N, V, C);
    w.f = g + N * (4.0 * C + 2.0 * V) * e / mem + 3 * AllReduce(tp_link, l.tp, N * 4.0);
    w.bi = g + N * (4.0 * C + 2.0 * V) * e / mem;
    w.bw = g;
  }
  if (part.embedding) {
    w.f += 2.0 * N * C * e / mem;
    w.bi += 2.0 * N * C * 4 / mem;
  }
  return w;
}

}  // namespace

double ModelFlopsPerToken(const ModelConfig& m, int64_t seq) {
  const double C = m.dim, HD = double(m.heads) * m.head_dim(), KVD = double(m.kv_heads) * m.head_dim();
  const double per_layer = C * HD + 2 * C * KVD + HD * C + 3 * C * m.ffn_dim + 2 * C;
  return 6.0 * (per_layer * m.layers + C * m.vocab_size) + 12.0 * m.layers * C * double(seq);
}

std::vector<int> PendingWeight(const PlanLayout& l, const SimResult& sim) {
  if (l.schedule != ScheduleKind::kZeroBubbleH1 && l.schedule != ScheduleKind::kZeroBubbleV) return {};
  std::vector<int> out;
  for (size_t s = 0; s < sim.peak_in_flight.size(); ++s) {
    out.push_back(std::max(1, sim.peak_in_flight[s] - sim.peak_activations[s]));
  }
  return out;
}

absl::StatusOr<StepPrediction> PredictStep(const ModelConfig& m, const PlanLayout& l, int64_t seq,
                                           const HardwareProfile& hw, int gpus_per_node) {
  const int gpn = std::max(1, gpus_per_node);
  const LinkProfile& tp_link = l.tp <= gpn ? hw.intra_node : hw.inter_node;
  const LinkProfile& pp_link = l.gpus() > gpn ? hw.inter_node : hw.intra_node;
  const LinkProfile& dp_link = l.tp * l.dp > gpn ? hw.inter_node : hw.intra_node;
  // Ranks beyond the cores share them (CPU hosts); GPUs each run alone.
  const double share = hw.concurrent_ranks > 0 ? std::max(1.0, double(l.gpus()) / hw.concurrent_ranks) : 1.0;

  BATON_RETURN_IF_ERROR(CheckSplit(m, l));
  StepPrediction p;
  const std::vector<PartLayers> parts = SplitParts(m, l, seq);
  Work worst;
  double worst_total = -1;
  for (const PartLayers& part : parts) {
    Work w = EndsWork(m, l, seq, hw, part, tp_link);
    for (int layer = part.first; layer < part.last; ++layer) {
      const Work lw = LayerWork(m, l, seq, hw, LayerModeOf(l.recompute, layer), tp_link);
      w.f += lw.f, w.bi += lw.bi, w.bw += lw.bw, w.comm += lw.comm;
    }
    if (w.f + w.bi + w.bw > worst_total) worst_total = w.f + w.bi + w.bw, worst = w;
  }
  p.forward = worst.f * share;
  p.backward_input = worst.bi * share;
  p.backward_weight = worst.bw * share;
  p.backward = p.backward_input + p.backward_weight;
  p.tp_comm = worst.comm;
  const double e = hw.device == Device::kCpu ? 4 : DTypeSize(hw.compute);
  const int64_t rows = l.sequence_parallel ? int64_t{l.micro_batch} * seq / l.tp : int64_t{l.micro_batch} * seq;
  p.p2p = l.pp > 1 ? rows * m.dim * e / (pp_link.bus_gbs * 1e9) + pp_link.latency_us * 1e-6 : 0;

  Costs costs{p.forward, p.backward, p.backward_input, p.backward_weight, p.p2p};
  // Past a few rounds of micro-batches a 1F1B-family pipeline is in its
  // steady state: every further micro-batch adds one F and one backward per
  // chunk to every stage. Simulate kSimulated of them and extrapolate the
  // rest (exact for equal stages; GPipe's memory grows with m: simulated whole).
  ScheduleSpec spec = l.spec();
  const int simulated = std::max(64, 8 * l.pp);
  const int extra = l.schedule != ScheduleKind::kGPipe && spec.microbatches > simulated
                        ? (spec.microbatches - simulated) / l.pp * l.pp
                        : 0;
  spec.microbatches -= extra;
  // extra is a multiple of pp and spec keeps >= 64 micro-batches, so the
  // generators' rules (m % pp, m >= pp) hold for spec exactly when for l.
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  if (!schedule.ok() && extra > 0) schedule = BuildSchedule(l.spec());  // the error names the real m
  if (!schedule.ok()) return schedule.status();
  absl::StatusOr<SimResult> sim = Simulate(*schedule, spec, costs);
  if (!sim.ok()) return sim.status();
  const double per_microbatch = l.virtual_stages * (p.forward + p.backward);
  p.pipeline = sim->makespan + extra * per_microbatch;
  double busy = 0;
  for (double b : sim->busy) busy += b + extra * per_microbatch;
  p.bubble = 1 - busy / (l.pp * p.pipeline);

  // After the pipeline: dp gradient sum (f32 grads), ZeRO-1 broadcast, tied embeddings, AdamW.
  const MemoryTarget target{hw.device, hw.compute, 0};
  absl::StatusOr<MemoryBreakdown> mem = PredictMemory(m, l, seq, target, sim->peak_in_flight, PendingWeight(l, *sim));
  if (!mem.ok()) return mem.status();
  const double params = static_cast<double>(mem->params);
  p.dp_sync = AllReduce(dp_link, l.dp, params * 4);
  if (l.zero == 1 && l.dp > 1) p.dp_sync += double(l.dp - 1) / l.dp * params * 4 / (dp_link.bus_gbs * 1e9);
  if (m.tie_embeddings && l.pp > 1) {
    p.dp_sync += AllReduce(pp_link, 2, double(m.vocab_size) / l.tp * m.dim * 4);
  }
  const double owned = static_cast<double>(mem->optimizer) / 8;
  p.optimizer = (owned * (hw.device == Device::kCpu ? 28 : 30) + params * 8) / (hw.memory_gbs * 1e9) * share;
  p.overhead = hw.step_overhead_ms * 1e-3;
  p.step = p.pipeline + p.dp_sync + p.optimizer + p.overhead;
  const double tokens = double(l.dp) * l.microbatches * l.micro_batch * seq;
  p.tokens_per_s = tokens / p.step;
  const double flops = p.tokens_per_s * ModelFlopsPerToken(m, seq) / l.gpus();
  p.mfu = hw.gemm_peak_tflops > 0 ? flops / (hw.gemm_peak_tflops * 1e12) : 0;
  p.mfu_datasheet = hw.datasheet_tflops > 0 ? flops / (hw.datasheet_tflops * 1e12) : 0;
  p.sim = *std::move(sim);
  return p;
}

}  // namespace baton
