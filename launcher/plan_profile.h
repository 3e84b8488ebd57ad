// What the planner knows about a machine: the measured speed of the op
// classes a training step is made of (GEMMs by shape class, attention,
// memory-bound pointwise work), the links between devices (NVLink within a
// node, InfiniBand across nodes) and the memory per device. Built-in
// profiles (plan_profiles.cc) carry our own dated measurements and name
// the source of every figure; `baton plan --calibrate` measures one on the
// present machine (plan_calibrate.cc) and saves it as JSON, which
// `--gpu PROFILE.json` reads back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

struct LinkProfile {
  double bus_gbs = 0;     // NCCL-style bus bandwidth per device, GB/s (10⁹ bytes/s)
  double latency_us = 0;  // per collective step / per message
};

struct HardwareProfile {
  std::string name;        // "h100-80g"
  std::string source;      // where the figures come from, dated
  Device device = Device::kCuda;
  DType compute = DType::kBF16;
  int64_t memory_bytes = 0;     // usable device memory (CPU: what one rank may use)
  int64_t runtime_reserve = 0;  // context, library workspaces, NCCL, allocator slack
  // GEMM throughput, TFLOP/s, by the smallest of (M, N, K): ≥ 2048, ≥ 512, below.
  double gemm_peak_tflops = 0;  // the 8192³ peak (the MFU denominator, as docs/performance.md)
  double gemm_large_tflops = 0, gemm_medium_tflops = 0, gemm_small_tflops = 0;
  double datasheet_tflops = 0;  // vendor dense bf16 figure (papers' MFU denominator); 0 = unknown
  // Causal attention, TFLOP/s counted as 2·B·H·T²·D forward and 2.5× that
  // backward, at head_dim 128; head_dim 64 runs at attention_d64 of it.
  double attention_fwd_tflops = 0, attention_bwd_tflops = 0, attention_d64 = 1.0;
  double memory_gbs = 0;  // pointwise, norm and optimizer traffic, GB/s
  double pointwise_passes = 1.0;  // multiplier on the counted pointwise bytes (launch gaps, un-fused passes)
  double step_overhead_ms = 0;    // fixed per step (host work, launches)
  LinkProfile intra_node;         // NVLink (or shared memory on a CPU host)
  LinkProfile inter_node;         // InfiniBand
  int concurrent_ranks = 0;       // ranks that compute at full speed at once; 0 = every rank (GPUs)

  // TFLOP/s of an (m, n, k) GEMM.
  double GemmTflops(int64_t m, int64_t n, int64_t k) const;
};

// "h100-80g", "h200-141g" (and "cpu-dev", this dev machine's calibration).
std::vector<std::string> BuiltinProfileNames();
absl::StatusOr<HardwareProfile> BuiltinProfile(const std::string& name);
// A built-in name or a PROFILE.json path.
absl::StatusOr<HardwareProfile> LoadProfile(const std::string& name_or_path);

std::string ProfileToJson(const HardwareProfile& p);
absl::StatusOr<HardwareProfile> ProfileFromJson(const std::string& text, const std::string& source_name);

// Runs GEMM, attention, norm and pointwise probes on the CPU backend (one
// thread per rank as `baton train` runs under mpiexec when cores are
// shared) and returns the measured profile; `cores` ranks may compute at
// once. Links are left at the shared-memory defaults.
absl::StatusOr<HardwareProfile> CalibrateCpu(int cores);

}  // namespace baton
