// The built-in hardware profiles as data, each figure with its source and
// date, and the JSON form `--calibrate` writes and `--gpu FILE` reads.
// Measured figures come from docs/performance.md and
// /work/shared/TOOLCHAIN.md (our runs); datasheet figures are marked so;
// "fit" marks the two factors fitted to train_bench's measured step
// (docs/plan.md shows the fit and the rows it was not fitted on).
#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "launcher/plan_profile.h"
#include "nlohmann/json.hpp"
#include "runtime/file_util.h"

namespace baton {

double HardwareProfile::GemmTflops(int64_t m, int64_t n, int64_t k) const {
  const int64_t smallest = std::min(m, std::min(n, k));
  if (smallest >= 2048) return gemm_large_tflops;
  if (smallest >= 512) return gemm_medium_tflops;
  return gemm_small_tflops;
}

namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// Shared by both: NVLink 4 (H100/H200 SXM, 450 GB/s per direction,
// datasheet) at an assumed 80 % NCCL bus efficiency; InfiniBand NDR
// 400 Gb/s per GPU (DGX H100 / HGX H200 reference design: one ConnectX-7
// per GPU, 50 GB/s) at 80 %. Latencies are typical NCCL figures (assumed).
void SetLinks(HardwareProfile& p) {
  p.intra_node = {360.0, 10.0};
  p.inter_node = {40.0, 20.0};
}

HardwareProfile H100() {
  HardwareProfile p;
  p.name = "h100-80g";
  p.source =
      "baton measurements on 1x H100 80GB HBM3 (nvidia-h100-x1), 2026-11-22/23: bf16 GEMM 838 TFLOP/s on 8192^3, "
      "model GEMMs at 92-93 % of it (per-op profile), D2D copy 3.0 TB/s, causal attention 366/286 TFLOP/s "
      "fwd/bwd (cuDNN via SDPA, D=128) and 252/153 at D=64 (docs/performance.md, TOOLCHAIN.md); 989 TFLOP/s "
      "dense bf16 and NVLink 4 / NDR IB from the datasheet; pointwise_passes and step_overhead fit to "
      "train_bench 1.3b (50.4k tokens/s)";
  p.memory_bytes = 81559 * kMiB;  // nvidia-smi total
  p.runtime_reserve = 3 * int64_t{1000000000};
  p.gemm_peak_tflops = 838;
  p.gemm_large_tflops = 775;
  p.gemm_medium_tflops = 760;
  p.gemm_small_tflops = 500;
  p.datasheet_tflops = 989;
  p.attention_fwd_tflops = 366;
  p.attention_bwd_tflops = 286;
  p.attention_d64 = 0.8;
  p.memory_gbs = 3000;
  p.pointwise_passes = 1.9;
  p.step_overhead_ms = 2.0;
  SetLinks(p);
  return p;
}

HardwareProfile H200() {
  HardwareProfile p;
  p.name = "h200-141g";
  p.source =
      "baton measurements on 1x H200 (nvidia-h200), 2026-12-03/04: bf16 GEMM 845 TFLOP/s on 8192^3, model GEMMs "
      "at 89-91 % of it, cuDNN attention backward ~280 TFLOP/s (docs/performance.md); forward 380 and HBM "
      "4.3 TB/s estimated (H100's measured ratios to the datasheet's 4.8 TB/s); 989 TFLOP/s dense bf16 and "
      "NVLink 4 / NDR IB from the datasheet; pointwise_passes and step_overhead fit to train_bench 1.3b "
      "(61.0k tokens/s)";
  p.memory_bytes = 143771 * kMiB;  // nvidia-smi total
  p.runtime_reserve = 3 * int64_t{1000000000};
  p.gemm_peak_tflops = 845;
  p.gemm_large_tflops = 755;
  p.gemm_medium_tflops = 760;
  p.gemm_small_tflops = 500;
  p.datasheet_tflops = 989;
  p.attention_fwd_tflops = 380;
  p.attention_bwd_tflops = 280;
  p.attention_d64 = 0.8;
  p.memory_gbs = 4300;
  p.pointwise_passes = 1.4;
  p.step_overhead_ms = 2.0;
  SetLinks(p);
  return p;
}

// This dev machine (2 cores, AMD EPYC, Debian 12), `baton plan --calibrate`
// with one thread per rank, 2026-12-04. Links: MPI over shared memory
// (Open MPI vader, oversubscribed ranks yield when idle): assumed.
HardwareProfile CpuDev() {
  HardwareProfile p;
  p.name = "cpu-dev";
  p.source = "baton plan --calibrate on the 2-core dev machine, 2026-12-04 (one thread per rank)";
  p.device = Device::kCpu;
  p.compute = DType::kF32;
  p.memory_bytes = int64_t{24} << 30;
  p.gemm_peak_tflops = 0.060;
  p.gemm_large_tflops = p.gemm_medium_tflops = 0.055;
  p.gemm_small_tflops = 0.040;
  p.attention_fwd_tflops = 0.010;
  p.attention_bwd_tflops = 0.008;
  p.attention_d64 = 1.0;
  p.memory_gbs = 5;
  p.pointwise_passes = 1.0;
  p.step_overhead_ms = 1.0;
  p.intra_node = {2.0, 30.0};
  p.inter_node = {2.0, 30.0};
  p.concurrent_ranks = 2;
  return p;
}

}  // namespace

std::vector<std::string> BuiltinProfileNames() { return {"h100-80g", "h200-141g", "cpu-dev"}; }

absl::StatusOr<HardwareProfile> BuiltinProfile(const std::string& name) {
  if (name == "h100-80g" || name == "h100") return H100();
  if (name == "h200-141g" || name == "h200") return H200();
  if (name == "cpu-dev") return CpuDev();
  return absl::NotFoundError(absl::StrCat("--gpu ", name, ": no such profile (built in: h100-80g, h200-141g, cpu-dev; "
                                          "or a PROFILE.json from baton plan --calibrate)"));
}

absl::StatusOr<HardwareProfile> LoadProfile(const std::string& name_or_path) {
  if (name_or_path.size() < 5 || name_or_path.substr(name_or_path.size() - 5) != ".json") {
    return BuiltinProfile(name_or_path);
  }
  absl::StatusOr<std::string> text = ReadWholeFile(name_or_path);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("--gpu ", text.status().message()));
  return ProfileFromJson(*text, name_or_path);
}

namespace {
nlohmann::json LinkJson(const LinkProfile& l) { return {{"bus_gbs", l.bus_gbs}, {"latency_us", l.latency_us}}; }
}  // namespace

std::string ProfileToJson(const HardwareProfile& p) {
  nlohmann::json j = {
      {"name", p.name},
      {"source", p.source},
      {"device", p.device == Device::kCpu ? "cpu" : "cuda"},
      {"compute", p.compute == DType::kF32 ? "f32" : "bf16"},
      {"memory_bytes", p.memory_bytes},
      {"runtime_reserve", p.runtime_reserve},
      {"gemm_peak_tflops", p.gemm_peak_tflops},
      {"gemm_large_tflops", p.gemm_large_tflops},
      {"gemm_medium_tflops", p.gemm_medium_tflops},
      {"gemm_small_tflops", p.gemm_small_tflops},
      {"datasheet_tflops", p.datasheet_tflops},
      {"attention_fwd_tflops", p.attention_fwd_tflops},
      {"attention_bwd_tflops", p.attention_bwd_tflops},
      {"attention_d64", p.attention_d64},
      {"memory_gbs", p.memory_gbs},
      {"pointwise_passes", p.pointwise_passes},
      {"step_overhead_ms", p.step_overhead_ms},
      {"intra_node", LinkJson(p.intra_node)},
      {"inter_node", LinkJson(p.inter_node)},
      {"concurrent_ranks", p.concurrent_ranks},
  };
  return j.dump(2) + "\n";
}

absl::StatusOr<HardwareProfile> ProfileFromJson(const std::string& text, const std::string& source_name) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": not a JSON object"));
  }
  HardwareProfile p;
  std::string missing;
  auto num = [&](const char* key, double* out) {
    if (j.contains(key) && j[key].is_number()) {
      *out = j[key].get<double>();
    } else if (missing.empty()) {
      missing = key;
    }
  };
  double memory = 0, reserve = 0, ranks = 0;
  num("memory_bytes", &memory);
  num("gemm_peak_tflops", &p.gemm_peak_tflops);
  num("gemm_large_tflops", &p.gemm_large_tflops);
  num("gemm_medium_tflops", &p.gemm_medium_tflops);
  num("gemm_small_tflops", &p.gemm_small_tflops);
  num("attention_fwd_tflops", &p.attention_fwd_tflops);
  num("attention_bwd_tflops", &p.attention_bwd_tflops);
  num("memory_gbs", &p.memory_gbs);
  if (!missing.empty()) return absl::InvalidArgumentError(absl::StrCat(source_name, ": missing number '", missing, "'"));
  num("runtime_reserve", &reserve);
  num("datasheet_tflops", &p.datasheet_tflops);
  num("attention_d64", &p.attention_d64);
  num("pointwise_passes", &p.pointwise_passes);
  num("step_overhead_ms", &p.step_overhead_ms);
  num("concurrent_ranks", &ranks);
  p.memory_bytes = static_cast<int64_t>(memory);
  p.runtime_reserve = static_cast<int64_t>(reserve);
  p.concurrent_ranks = static_cast<int>(ranks);
  p.name = j.value("name", source_name);
  p.source = j.value("source", source_name);
  p.device = j.value("device", "cuda") == "cpu" ? Device::kCpu : Device::kCuda;
  p.compute = j.value("compute", "bf16") == "f32" ? DType::kF32 : DType::kBF16;
  for (const char* side : {"intra_node", "inter_node"}) {
    LinkProfile& l = std::string(side) == "intra_node" ? p.intra_node : p.inter_node;
    if (j.contains(side) && j[side].is_object()) {
      l.bus_gbs = j[side].value("bus_gbs", 0.0);
      l.latency_us = j[side].value("latency_us", 0.0);
    }
    if (l.bus_gbs <= 0) return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", side, ".bus_gbs must be > 0"));
  }
  if (p.gemm_large_tflops <= 0 || p.memory_gbs <= 0 || p.memory_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": gemm_large_tflops, memory_gbs and memory_bytes must be > 0"));
  }
  return p;
}

}  // namespace baton
