// The pre-step memory refusal (see memory_fit.h).
#include "launcher/memory_fit.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "launcher/plan_memory.h"
#include "launcher/rank_env.h"
#include "parallel/schedule_simulate.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/memory_info.h"
#endif

namespace baton {
namespace {

// Peak in-flight (micro-batch, chunk) units per stage, from the schedule
// simulator; the peak saturates after a few rounds, so a bounded number of
// micro-batches (as `baton plan` does) keeps this cheap for long steps.
absl::StatusOr<std::vector<int>> PeakInFlight(const PlanLayout& l) {
  if (l.pp == 1) return std::vector<int>{1};
  ScheduleSpec spec = l.spec();
  spec.microbatches = std::min(spec.microbatches, 4 * l.pp * l.virtual_stages);
  absl::StatusOr<Schedule> schedule = BuildSchedule(spec);
  if (!schedule.ok()) schedule = BuildSchedule(l.spec());
  if (!schedule.ok()) return schedule.status();
  absl::StatusOr<SimResult> sim = Simulate(*schedule, spec);
  if (!sim.ok()) return sim.status();
  return sim->peak_in_flight;
}

int64_t MemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream ss(line.substr(13));
    int64_t kb = 0;
    ss >> kb;
    return kb * 1024;
  }
  return 0;  // unknown: the check is skipped
}

}  // namespace

absl::StatusOr<int64_t> PredictRankBytes(const JobConfig& config, Device device) {
  const ParallelConfig& p = config.parallel;
  PlanLayout l;
  l.dp = p.dp;
  l.pp = p.pp;
  l.tp = p.tp;
  l.virtual_stages = p.virtual_stages;
  l.schedule = p.schedule;
  l.micro_batch = config.train.micro_batch_size;
  l.microbatches = static_cast<int>(config.microbatches());
  l.recompute = config.recompute;
  l.zero = p.zero;
  l.sequence_parallel = p.sequence_parallel;
  MemoryTarget target;
  target.device = device;
  target.compute = device == Device::kCuda && config.train.precision == "bf16" ? DType::kBF16 : DType::kF32;
  std::vector<int> in_flight;
  BATON_ASSIGN_OR_RETURN(in_flight, PeakInFlight(l));
  BATON_ASSIGN_OR_RETURN(MemoryBreakdown b, PredictMemory(config.model, l, config.train.seq_len, target, in_flight));
  return b.total();
}

absl::StatusOr<int64_t> AvailableBytes(Device device, int ranks_on_node) {
#ifdef BATON_HAVE_CUDA
  if (device == Device::kCuda) {
    BATON_ASSIGN_OR_RETURN(cuda::GpuMemory mem, cuda::CurrentGpuMemory());
    return mem.free_bytes;
  }
#endif
  (void)device;
  return MemAvailableBytes() / std::max(1, ranks_on_node);
}

absl::Status CheckMemoryFits(const JobConfig& config, Device device, int64_t predicted, int64_t available,
                             Communicator* world) {
  // MB as i32: enough for 2 PB, and the reductions know i32.
  constexpr int64_t kMb = 1 << 20;
  const int size = world != nullptr ? world->size() : 1;
  Tensor mine = Tensor::Empty({2}, DType::kI32);
  mine.data<int32_t>()[0] = static_cast<int32_t>(std::min<int64_t>(predicted / kMb + 1, INT32_MAX));
  mine.data<int32_t>()[1] = static_cast<int32_t>(std::min<int64_t>(available / kMb, INT32_MAX));
  Tensor all = Tensor::Empty({2 * size}, DType::kI32);
  if (world != nullptr) {
    BATON_RETURN_IF_ERROR(world->AllGather(mine, all));
  } else {
    all = mine;
  }
  const int32_t* a = all.data<int32_t>();
  for (int r = 0; r < size; ++r) {
    const int64_t need = a[2 * r], have = a[2 * r + 1];
    if (have <= 0 || need <= have) continue;  // 0: unknown, not refused
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job does not fit in memory: rank ", r, " needs about ", FormatBytes(need * kMb), " (weights, grads, "
        "optimizer state, activations) but has ", FormatBytes(have * kMb),
        device == Device::kCuda ? " free on its GPU" : " of host RAM (MemAvailable per rank on its node)",
        "; lower train.micro_batch_size (now ", config.train.micro_batch_size, ") or train.seq_len (now ",
        config.train.seq_len, "), set recompute.policy=\"selective\" or \"full\", or split the model over more "
        "ranks (parallel.pp, parallel.tp, parallel.zero=1)"));
  }
  return absl::OkStatus();
}

absl::Status CheckJobFitsMemory(const JobConfig& config, Device device, Communicator* world) {
  int ranks_on_node = 1;
  if (absl::StatusOr<std::optional<RankEnv>> env = DetectRankEnv(ProcessEnv()); env.ok() && env->has_value()) {
    ranks_on_node = std::max(1, (*env)->local_size);
  }
  // A layout the model cannot predict is the mesh checks' business, not a refusal here.
  absl::StatusOr<int64_t> predicted = PredictRankBytes(config, device);
  BATON_ASSIGN_OR_RETURN(const int64_t available, AvailableBytes(device, ranks_on_node));
  return CheckMemoryFits(config, device, predicted.ok() ? *predicted : 0, available, world);
}

}  // namespace baton
