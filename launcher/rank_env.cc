// Rank discovery from the launcher's environment (see rank_env.h).
#include "launcher/rank_env.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {
namespace {

// The variables one launcher sets; empty name = that launcher does not say.
struct Source {
  const char* name;
  const char* rank;
  const char* world;
  const char* local_rank;
  const char* local_size;
  const char* node;
};

constexpr Source kSources[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_NODE_RANK"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID"},
    {"pmix", "PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE", "PMIX_NODEID"},
};

// Reads `var` as a number >= min; `*out` unchanged when unset.
absl::Status ReadInt(const EnvLookup& env, const char* var, int min, int* out) {
  if (var == nullptr || *var == '\0') return absl::OkStatus();
  const char* v = env(var);
  if (v == nullptr) return absl::OkStatus();
  int x = 0;
  if (!absl::SimpleAtoi(v, &x) || x < min) {
    return absl::InvalidArgumentError(
        absl::StrCat("launcher environment: ", var, "=", v, " is not a number >= ", min));
  }
  *out = x;
  return absl::OkStatus();
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

absl::StatusOr<std::optional<RankEnv>> DetectRankEnv(const EnvLookup& env) {
  for (const Source& s : kSources) {
    if (env(s.rank) == nullptr) continue;
    // Slurm sets SLURM_PROCID in a batch script's shell too (rank 0 of the
    // batch step); without SLURM_NTASKS it is not a task launch.
    if (env(s.world) == nullptr) continue;
    RankEnv e;
    e.source = s.name;
    BATON_RETURN_IF_ERROR(ReadInt(env, s.rank, 0, &e.rank));
    BATON_RETURN_IF_ERROR(ReadInt(env, s.world, 1, &e.world));
    BATON_RETURN_IF_ERROR(ReadInt(env, s.local_rank, 0, &e.local_rank));
    // SLURM_NTASKS_PER_NODE is "4" or "4(x2)" (a uniform layout); SLURM_TASKS_PER_NODE
    // may be "4,3". Only a plain number is trusted as this node's count.
    int local_size = 0;
    if (const char* ls = env(s.local_size); ls != nullptr && absl::SimpleAtoi(ls, &local_size)) {
      e.local_size = local_size >= 1 ? local_size : 0;
    }
    BATON_RETURN_IF_ERROR(ReadInt(env, s.node, 0, &e.node));
    if (e.rank >= e.world) {
      return absl::InvalidArgumentError(absl::StrCat("launcher environment (", s.name, "): ", s.rank, "=",
                                                     e.rank, " is not below ", s.world, "=", e.world));
    }
    if (e.local_size > 0 && e.local_rank >= e.local_size) e.local_size = 0;  // inconsistent: unknown
    return std::optional<RankEnv>(e);
  }
  return std::optional<RankEnv>();
}

std::string DescribeRankEnv(const RankEnv& e) {
  std::string where = e.source == "openmpi" ? "Open MPI (OMPI_COMM_WORLD_*)"
                      : e.source == "slurm" ? "Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID)"
                      : e.source == "pmix"  ? "PMIx (PMIX_RANK)"
                                            : "no launcher (one process)";
  std::string local = e.local_size > 0 ? absl::StrCat(", ", e.local_size, " on this node") : "";
  return absl::StrCat("ranks: ", e.world, " from ", where, "; rank 0 on node ", e.node, local,
                      "; GPU = local rank");
}

absl::Status CheckGpusPerNode(const RankEnv& e, int gpus) {
  if (gpus <= 0) return absl::OkStatus();  // a CPU run: no GPU to pick
  const int on_node = e.local_size > 0 ? e.local_size : e.local_rank + 1;
  if (on_node <= gpus && e.local_rank < gpus) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "node ", e.node, " runs ", on_node, " ranks but has ", gpus, " GPUs (rank ", e.rank, " is local rank ",
      e.local_rank, "): start at most ", gpus,
      " ranks per node (srun --ntasks-per-node / --gpus-per-node, mpirun --map-by ppr:", gpus, ":node)"));
}

absl::StatusOr<int> GpuOfThisRank(const EnvLookup& env, int gpus, bool share) {
  BATON_ASSIGN_OR_RETURN(std::optional<RankEnv> e, DetectRankEnv(env));
  if (!e || gpus <= 0) return 0;
  if (share) return e->local_rank % gpus;
  if (e->source == "slurm" && env("SLURM_GPUS_PER_TASK") != nullptr && gpus == 1) return 0;
  BATON_RETURN_IF_ERROR(CheckGpusPerNode(*e, gpus));
  return e->local_rank;
}

}  // namespace baton
