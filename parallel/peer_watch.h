// Dead and silent peers: a deadline on every MPI wait, and a liveness probe
// that names who stopped answering. Without it a rank whose peer was
// SIGKILLed under srun, or SIGSTOPped anywhere, waits in MPI_Wait forever
// at 100 % CPU. With it, MpiCommunicator polls its requests (MPI_Test)
// until parallel.timeout_s passes with the request unfinished; then this
// rank pings every world rank on a private communicator and waits a few
// seconds for the answers: ranks inside any baton wait answer (the poll
// loops serve pings), a dead or stopped rank does not, and the error names
// it. The launcher turns that error into MPI_Abort, so every rank exits.
// Invariant: with no watch enabled (one process, unit tests), waits behave
// exactly as MPI_Wait did.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace baton {

// Collective over `world`: waits longer than timeout_s (> 0) fail with
// DeadlineExceeded. Call after MPI_Init, before creating communicators.
absl::Status EnablePeerWatch(MPI_Comm world, double timeout_s);
// Frees the watch's communicator (before MPI_Finalize). Safe to call twice.
void DisablePeerWatch();
// The deadline in seconds; 0 when no watch is enabled.
double PeerTimeoutSeconds();
// True once a wait timed out in this process: error paths then drop
// pending requests instead of waiting on them again.
bool PeerWatchTripped();

// MPI_Wait with the deadline: polls `req` (serving liveness pings) until it
// completes, or fails after the timeout with "<describe()>: no progress in
// N s (parallel.timeout_s); <who does not answer>". A failed MPI call is
// returned as FromMpi does.
// `code`, when given, receives the failed call's MPI error code.
absl::Status WaitWithDeadline(MPI_Request* req, MPI_Status* status, const std::function<std::string()>& describe,
                              int* code = nullptr);

// "world ranks 0, 2": the world ranks of `comm`'s members, for messages.
std::string WorldRanksOf(MPI_Comm comm);

}  // namespace baton
