// Preemption: a job told to stop (SIGTERM from scancel or a preempting
// Slurm, SIGUSR1 from sbatch --signal=USR1@120, SIGINT from Ctrl-C) ends
// the current step, writes a checkpoint and exits with kRequeueExitCode,
// instead of dying and losing every step since the last checkpoint.
// The handler only sets a flag. The training loop calls AgreeToStop once
// per step: one all-reduce of the flags, so a signal that reached only some
// ranks (or reached them in different steps) stops every rank after the
// same step, and the collective checkpoint that follows matches.
// A second SIGINT kills the process the default way (an impatient Ctrl-C).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace baton {

// EX_TEMPFAIL: "stopped on request, checkpoint written, run me again".
// slurm/train.sbatch requeues the job when srun returns it (or a site sets
// RequeueExit=75 in slurm.conf).
inline constexpr int kRequeueExitCode = 75;

// Installs the SIGTERM, SIGUSR1 and SIGINT handlers (idempotent).
void InstallStopHandlers();

// The stop signal this process received, 0 if none.
int ReceivedStopSignal();

// Collective over `world` (null: this process alone): true on every rank
// once any rank received a stop signal. Remembers the agreement for
// StopAgreed().
absl::StatusOr<bool> AgreeToStop(Communicator* world);

// True after AgreeToStop returned true in this process.
bool StopAgreed();

// "SIGUSR1" etc.; "a stop signal on another rank" for 0.
std::string StopSignalName(int sig);

// Test hook: forget the received signal and the agreement.
void ResetStopForTest();

}  // namespace baton
