// Where this process sits in the job, read from whichever launcher started
// it: Open MPI's mpirun (OMPI_COMM_WORLD_*), Slurm's srun (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID) or a bare PMIx server
// (PMIX_RANK ...). The launcher (MpiSession, device choice) asks here
// instead of reading variables itself, so every rank uses one answer and
// rank 0 can say which source it came from. The environment is passed in
// as a lookup function, so tests feed a fake one with no launcher at all.
// Invariant: a RankEnv that DetectRankEnv returns has 0 <= rank < world and
// 0 <= local_rank < local_size (local_size 0 when the source does not say).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace baton {

struct RankEnv {
  int rank = 0, world = 1;          // this process among all of the job's
  int local_rank = 0;               // among the processes of its node: picks the GPU
  int local_size = 0;               // processes on this node; 0 = the launcher did not say
  int node = 0;                     // node index within the job (0 when unknown)
  std::string source = "none";      // "openmpi", "slurm", "pmix" or "none" (one process)
};

// getenv-like: the variable's value, or null when unset.
using EnvLookup = std::function<const char*(const char*)>;

// The process environment (std::getenv).
EnvLookup ProcessEnv();

// Open MPI first (mpirun sets it even under Slurm, and it is what MPI_Init
// will use), then Slurm (srun --mpi=pmix sets both SLURM_* and PMIX_*;
// Slurm's names the node), then plain PMIx; nullopt when none is present
// (a single process). A variable that is present but not a number, or out
// of range, is InvalidArgument naming it.
absl::StatusOr<std::optional<RankEnv>> DetectRankEnv(const EnvLookup& env);

// One line for rank 0: "ranks: 4 from slurm (SLURM_PROCID...), node 0 of 1, 4 on this node".
std::string DescribeRankEnv(const RankEnv& e);

// GPU = local rank. FailedPrecondition when the node runs more ranks than
// it has GPUs (gpus > 0), naming both counts and what to change.
// local_size 0 (unknown) falls back to local_rank + 1.
absl::Status CheckGpusPerNode(const RankEnv& e, int gpus);

// The GPU this process should use among the `gpus` it sees: its local rank,
// after CheckGpusPerNode. When Slurm binds GPUs per task
// (--gpus-per-task, SLURM_GPUS_PER_TASK set) each task sees only its own:
// then it is GPU 0. One process (no launcher): GPU 0. share = true
// (train.share_gpus) lets several ranks use one GPU on purpose (local rank
// mod gpus: tp or pp tried on one device), without the check.
absl::StatusOr<int> GpuOfThisRank(const EnvLookup& env, int gpus, bool share = false);

}  // namespace baton
