// MPI start-up, shutdown and rank-aware failure reporting (see mpi_session.h).
#include "launcher/mpi_session.h"

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "launcher/rank_env.h"
#include "parallel/peer_watch.h"

namespace baton {

bool LaunchedByMpi() {
  absl::StatusOr<std::optional<RankEnv>> e = DetectRankEnv(ProcessEnv());
  if (!e.ok() || e->has_value()) return true;  // a broken launcher environment: let MPI_Init judge
  return std::getenv("PMI_RANK") != nullptr;   // MPICH's PMI
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:  // the job does not fit: lower a size
      return 2;
    default:
      return 1;
  }
}

MpiSession::MpiSession() {
  if (!LaunchedByMpi()) return;
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  active_ = true;
  // One line saying where the ranks came from: the first thing to check
  // when a job starts N copies of a 1-rank run (wrong srun --mpi plugin).
  absl::StatusOr<std::optional<RankEnv>> e = DetectRankEnv(ProcessEnv());
  if (rank_ == 0 && size_ > 1 && e.ok() && e->has_value()) {
    std::printf("%s\n", DescribeRankEnv(**e).c_str());
    std::fflush(stdout);
  }
}

MpiSession::~MpiSession() {
  if (!active_) return;
  DisablePeerWatch();
  MPI_Finalize();
}

int MpiSession::Fail(const absl::Status& status) {
  const int code = ExitCodeFor(status);
  std::string msg(status.message());
  if (size_ == 1) {
    std::fprintf(stderr, "baton: error: %s\n", msg.c_str());
    return code;
  }
  // Bad input is the same on every rank; running out of memory may hit one rank only.
  if (code == 2 && status.code() != absl::StatusCode::kResourceExhausted) {
    if (rank_ == 0) std::fprintf(stderr, "baton: error: %s\n", msg.c_str());
    return code;
  }
  std::fprintf(stderr, "baton[rank %d]: error: %s\n", rank_, msg.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  return code;
}

}  // namespace baton
