// `baton plan --calibrate`: measures the op classes the time model prices
// (GEMMs of three shape classes, causal attention forward and backward, an
// RMSNorm pass for memory bandwidth) with the CPU backend on this machine
// and returns them as a HardwareProfile. Each probe runs once to warm up,
// then is timed as the best of several repeats (the machine is shared).
#include <algorithm>
#include <chrono>
#include <functional>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "launcher/plan_profile.h"
#include "runtime/ops.h"

namespace baton {
namespace {

Tensor Random(const Shape& shape) {
  Tensor t = Tensor::Empty(shape, DType::kF32);
  uint64_t s = 88172645463325252ull;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    t.data<float>()[i] = static_cast<float>(static_cast<double>(s % 2001) / 1000.0 - 1.0);
  }
  return t;
}

// Best wall time of `repeats` runs, seconds.
absl::StatusOr<double> BestSeconds(const std::function<absl::Status()>& fn, int repeats) {
  BATON_RETURN_IF_ERROR(fn());
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    BATON_RETURN_IF_ERROR(fn());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

absl::StatusOr<double> GemmTflops(int64_t n) {
  Tensor a = Random({n, n}), b = Random({n, n}), c = Tensor::Empty({n, n}, DType::kF32);
  BATON_ASSIGN_OR_RETURN(const double s, BestSeconds([&] { return ops::MatMul(a, false, b, true, c); }, 5));
  return 2.0 * n * n * n / s / 1e12;
}

}  // namespace

absl::StatusOr<HardwareProfile> CalibrateCpu(int cores) {
  HardwareProfile p;
  p.name = "calibrated-cpu";
  p.device = Device::kCpu;
  p.compute = DType::kF32;
  p.memory_bytes = int64_t{24} << 30;
  BATON_ASSIGN_OR_RETURN(p.gemm_large_tflops, GemmTflops(1024));
  BATON_ASSIGN_OR_RETURN(p.gemm_medium_tflops, GemmTflops(512));
  BATON_ASSIGN_OR_RETURN(p.gemm_small_tflops, GemmTflops(128));
  p.gemm_peak_tflops = std::max(p.gemm_large_tflops, p.gemm_medium_tflops);

  const int64_t B = 2, T = 256, H = 4, D = 32;
  Tensor q = Random({B, T, H, D}), k = Random({B, T, H, D}), v = Random({B, T, H, D});
  Tensor out = Tensor::Empty({B, T, H, D}, DType::kF32), lse = Tensor::Empty({B, H, T}, DType::kF32);
  Tensor dq = Tensor::Empty({B, T, H, D}, DType::kF32), dk = dq.Clone(), dv = dq.Clone();
  const double flops = 2.0 * B * H * double(T) * T * D;  // causal half of 4·B·H·T²·D
  BATON_ASSIGN_OR_RETURN(const double fwd, BestSeconds([&] { return ops::Attention(q, k, v, out, lse, nullptr); }, 5));
  BATON_ASSIGN_OR_RETURN(const double bwd, BestSeconds([&] {
    return ops::AttentionBackward(out, q, k, v, out, lse, nullptr, dq, dk, dv);
  }, 5));
  p.attention_fwd_tflops = flops / fwd / 1e12;
  p.attention_bwd_tflops = 2.5 * flops / bwd / 1e12;

  const int64_t N = 8192, C = 512;
  Tensor x = Random({N, C}), w = Random({C}), y = Tensor::Empty({N, C}, DType::kF32),
         rstd = Tensor::Empty({N}, DType::kF32);
  BATON_ASSIGN_OR_RETURN(const double norm, BestSeconds([&] { return ops::RmsNorm(x, w, 1e-5f, y, rstd); }, 9));
  p.memory_gbs = 2.0 * N * C * 4 / norm / 1e9;
  p.pointwise_passes = 1.0;
  p.step_overhead_ms = 1.0;
  p.intra_node = {2.0, 30.0};  // MPI over shared memory: assumed, not probed
  p.inter_node = {2.0, 30.0};
  p.concurrent_ranks = std::max(1, cores);
  p.source = absl::StrCat("baton plan --calibrate (CPU backend, ", cores,
                          " concurrent ranks; links assumed: MPI shared memory)");
  return p;
}

}  // namespace baton
