// The process's place in the job: starts MPI when a launcher (mpirun, srun
// with PMIx) started us, and stays a plain single process otherwise, so the
// default job needs no MPI at all. Owns MPI_Init/MPI_Finalize, and turns a
// failure into one line prefixed with the rank — aborting the whole job on
// a run-time failure so that no peer hangs waiting for a dead rank.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace baton {

class MpiSession {
 public:
  MpiSession();   // MPI_Init if launched by mpirun/srun
  ~MpiSession();  // MPI_Finalize
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  bool active() const { return active_; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  // Prints "baton: error: ..." (one process) or "baton[rank r]: error: ..."
  // and returns the exit status: 2 for bad input or a job too big for
  // memory, 1 otherwise. Bad input is the same on every rank, so only rank
  // 0 prints it; a run-time failure or an exhausted memory on any rank
  // aborts the job (MPI_Abort) after printing.
  int Fail(const absl::Status& status);

 private:
  bool active_ = false;
  int rank_ = 0, size_ = 1;
};

// True when the environment shows an MPI launcher (Open MPI, PMIx, Slurm).
bool LaunchedByMpi();

// Exit status for a Status: 2 bad input (InvalidArgument, NotFound,
// FailedPrecondition, OutOfRange) or a job too big (ResourceExhausted), 1
// anything else.
int ExitCodeFor(const absl::Status& status);

}  // namespace baton
