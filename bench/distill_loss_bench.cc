// distill_loss_bench: the GPU cost of the distillation loss next to the
// cross-entropy it replaces on the last stage, per (N rows, V vocabulary)
// shape, bf16 and f32 logits: runtime DistillLoss (3 row passes: maxes,
// sums, loss + gradient) against the vocab-parallel cross-entropy's 4
// passes (ops::RowMax, RowSumExp, PickTargets, VocabParallelCrossEntropy),
// both with the gradient written in place, tp = 1. Reports ms per call and
// the effective bandwidth (bytes of logits read and written). Prints a
// table, writes JSON (--json FILE). A benchmark, not a test.
//   distill_loss_bench [--rows N] [--iters I] [--json FILE]
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/cpu/convert.h"
#include "kernels/gpu.h"
#include "runtime/cuda_allocator.h"
#include "runtime/distill_loss.h"
#include "runtime/ops.h"

namespace baton {
namespace {

void Must(const absl::Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "distill_loss_bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

void Sync() {
  if (cudaDeviceSynchronize() != cudaSuccess) {
    std::fprintf(stderr, "distill_loss_bench: CUDA error\n");
    std::exit(1);
  }
}

Tensor RandomDevice(int64_t n, int64_t v, DType t, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 3.f);
  Tensor host = Tensor::Empty({n, v}, DType::kF32);
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = g(rng);
  if (t == DType::kBF16) {
    Tensor b = Tensor::Empty({n, v}, DType::kBF16);
    cpu::F32ToBf16(host.data<float>(), host.numel(), static_cast<uint16_t*>(b.raw()));
    host = b;
  }
  Tensor d = Tensor::Empty({n, v}, t, DefaultCudaAllocator());
  d.CopyFrom(host);
  return d;
}

// Milliseconds per call of f, after 2 warm-up calls, over `iters` calls.
template <typename F>
double TimeMs(F&& f, int iters) {
  f();
  f();
  Sync();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < iters; ++i) f();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

}  // namespace
}  // namespace baton

int main(int argc, char** argv) {
  using namespace baton;
  int64_t rows = 8192;
  int iters = 20;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--rows") rows = std::atoll(next().c_str());
    else if (a == "--iters") iters = std::atoi(next().c_str());
    else if (a == "--json") json = next();
    else {
      std::fprintf(stderr, "usage: distill_loss_bench [--rows N] [--iters I] [--json FILE]\n");
      return 2;
    }
  }
  if (CudaDeviceCount() == 0) {
    std::fprintf(stderr, "distill_loss_bench: no GPU (%s)\n", CudaDeviceSummary().c_str());
    return 1;
  }
  std::string out = "[";
  std::printf("%-6s %8s %8s %12s %12s %10s %14s\n", "dtype", "rows", "vocab", "ce ms", "distill ms", "ratio",
              "distill GB/s");
  for (DType t : {DType::kBF16, DType::kF32}) {
    for (int64_t v : {32000, 128256}) {
      Tensor s = RandomDevice(rows, v, t, 1), te = RandomDevice(rows, v, t, 2);
      Tensor host_y = Tensor::Empty({rows}, DType::kI32);
      for (int64_t r = 0; r < rows; ++r) host_y.data<int32_t>()[r] = static_cast<int32_t>((r * 7919) % v);
      Tensor y = Tensor::Empty({rows}, DType::kI32, DefaultCudaAllocator());
      y.CopyFrom(host_y);
      Tensor max = Tensor::Empty({rows}, DType::kF32, DefaultCudaAllocator()), sum = max.Clone(), tl = max.Clone(),
             losses = max.Clone();
      const double ce_ms = TimeMs(
          [&] {
            Must(ops::RowMax(s, max));
            Must(ops::RowSumExp(s, max, sum));
            Must(ops::PickTargets(s, y, 0, tl));
            Must(ops::VocabParallelCrossEntropy(s, y, 0, max, sum, tl, losses, &s, 1e-4f));
          },
          iters);
      const double kd_ms = TimeMs(
          [&] {
            absl::StatusOr<DistillLossSums> r = DistillLoss(s, te, y, {0.5, 2.0}, 1e-4, &s);
            if (!r.ok()) {
              std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
              std::exit(1);
            }
          },
          iters);
      // Logits touched: student read 3× and written once, teacher read 3×.
      const double bytes = static_cast<double>(rows) * v * DTypeSize(t) * 7;
      std::printf("%-6s %8lld %8lld %12.3f %12.3f %10.2f %14.1f\n", DTypeName(t), static_cast<long long>(rows),
                  static_cast<long long>(v), ce_ms, kd_ms, kd_ms / ce_ms, bytes / (kd_ms * 1e6));
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "%s{\"dtype\":\"%s\",\"rows\":%lld,\"vocab\":%lld,\"ce_ms\":%.4f,\"distill_ms\":%.4f}",
                    out.size() > 1 ? "," : "", DTypeName(t), static_cast<long long>(rows), static_cast<long long>(v),
                    ce_ms, kd_ms);
      out += buf;
    }
  }
  out += "]\n";
  if (!json.empty()) {
    FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) return 1;
    std::fputs(out.c_str(), f);
    std::fclose(f);
  }
  return 0;
}
