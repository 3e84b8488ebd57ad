// Deadlines on MPI waits and the liveness probe (see peer_watch.h).
#include "parallel/peer_watch.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "parallel/mpi_check.h"

namespace baton {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kPingTag = 1, kPongTag = 2;

MPI_Comm g_watch = MPI_COMM_NULL;  // a duplicate of world: pings never match training traffic
double g_timeout_s = 0;
bool g_tripped = false;

bool Finalized() {
  int f = 0;
  MPI_Finalized(&f);
  return f != 0;
}

// Answers every ping that arrived (a 4-byte eager send: never blocks).
void ServePings() {
  if (g_watch == MPI_COMM_NULL) return;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kPingTag, g_watch, &flag, &st) != MPI_SUCCESS || !flag) return;
    int32_t token = 0, me = 0;
    MPI_Recv(&token, 1, MPI_INT32_T, st.MPI_SOURCE, kPingTag, g_watch, MPI_STATUS_IGNORE);
    MPI_Comm_rank(g_watch, &me);
    MPI_Send(&me, 1, MPI_INT32_T, st.MPI_SOURCE, kPongTag, g_watch);  // the answer names its sender
  }
}

// Sleeps a little more the longer a wait lasts: spins for the first 100 µs
// (latency), then backs off to 1 ms naps (a stuck peer costs no CPU).
void Pause(Clock::duration waited) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(waited).count();
  if (us < 100) return;
  if (us < 2000) {
    sched_yield();
    return;
  }
  timespec ts{0, us < 100000 ? 100000 : 1000000};
  nanosleep(&ts, nullptr);
}

// Pings every other world rank and waits up to `window` for the pongs,
// serving pings meanwhile (two timed-out ranks probe each other). Returns
// the world ranks that did not answer.
std::vector<int> SilentRanks(std::chrono::duration<double> window) {
  int size = 1, rank = 0;
  MPI_Comm_size(g_watch, &size);
  MPI_Comm_rank(g_watch, &rank);
  std::vector<int32_t> out(size, rank), in(size, -1);
  std::vector<MPI_Request> sends, recvs(size, MPI_REQUEST_NULL);
  for (int r = 0; r < size; ++r) {
    if (r == rank) continue;
    MPI_Request s = MPI_REQUEST_NULL;
    MPI_Isend(&out[r], 1, MPI_INT32_T, r, kPingTag, g_watch, &s);
    sends.push_back(s);  // left pending on a dead peer: the process is about to abort
    MPI_Irecv(&in[r], 1, MPI_INT32_T, r, kPongTag, g_watch, &recvs[r]);
  }
  const Clock::time_point end = Clock::now() + std::chrono::duration_cast<Clock::duration>(window);
  std::vector<int> silent;
  for (;;) {
    ServePings();
    silent.clear();
    for (int r = 0; r < size; ++r) {
      if (r == rank || in[r] == r) continue;
      // Only an answer counts: a request completed in error (a peer just killed) does not.
      int done = 0;
      if (recvs[r] != MPI_REQUEST_NULL) MPI_Test(&recvs[r], &done, MPI_STATUS_IGNORE);
      if (in[r] != r) silent.push_back(r);
    }
    if (silent.empty() || Clock::now() >= end) break;
    timespec ts{0, 1000000};
    nanosleep(&ts, nullptr);
  }
  return silent;
}

}  // namespace

absl::Status EnablePeerWatch(MPI_Comm world, double timeout_s) {
  if (!(timeout_s > 0)) return absl::InvalidArgumentError(absl::StrCat("peer watch: timeout ", timeout_s, " s"));
  if (g_watch == MPI_COMM_NULL) {
    BATON_CHECK_MPI(MPI_Comm_dup(world, &g_watch));
    BATON_CHECK_MPI(MPI_Comm_set_errhandler(g_watch, MPI_ERRORS_RETURN));
  }
  g_timeout_s = timeout_s;
  g_tripped = false;
  return absl::OkStatus();
}

void DisablePeerWatch() {
  if (g_watch != MPI_COMM_NULL && !Finalized() && !g_tripped) MPI_Comm_free(&g_watch);
  g_watch = MPI_COMM_NULL;
  g_timeout_s = 0;
}

double PeerTimeoutSeconds() { return g_timeout_s; }
bool PeerWatchTripped() { return g_tripped; }

absl::Status WaitWithDeadline(MPI_Request* req, MPI_Status* status, const std::function<std::string()>& describe,
                              int* code_out) {
  if (g_timeout_s <= 0) {
    const int code = MPI_Wait(req, status);
    if (code_out != nullptr) *code_out = code;
    return FromMpi(code, "MPI_Wait", __FILE__, __LINE__);
  }
  const Clock::time_point start = Clock::now();
  const auto limit = std::chrono::duration<double>(g_timeout_s);
  for (;;) {
    int done = 0;
    const int code = MPI_Test(req, &done, status);
    if (code_out != nullptr) *code_out = code;
    if (code != MPI_SUCCESS) return FromMpi(code, "MPI_Test", __FILE__, __LINE__);
    if (done) return absl::OkStatus();
    ServePings();
    const Clock::duration waited = Clock::now() - start;
    if (waited >= limit) break;
    Pause(waited);
  }
  g_tripped = true;
  const double window = std::clamp(g_timeout_s / 2, 1.0, 10.0);
  std::vector<int> silent = SilentRanks(std::chrono::duration<double>(window));
  std::string who = silent.empty()
                        ? "every rank answered a ping (a stopped peer was resumed, one is stuck outside "
                          "communication, or the ranks disagree on the order of collectives)"
                        : absl::StrCat(silent.size() == 1 ? "rank " : "ranks ", absl::StrJoin(silent, ", "),
                                       silent.size() == 1 ? " does" : " do",
                                       " not answer (dead, or stopped: kill -STOP, a debugger, a hung GPU)");
  return absl::DeadlineExceededError(absl::StrFormat("%s: no progress in %.0f s (parallel.timeout_s); %s",
                                                     describe(), g_timeout_s, who));
}

std::string WorldRanksOf(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  MPI_Group group, world;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> mine(size), theirs(size);
  for (int i = 0; i < size; ++i) mine[i] = i;
  MPI_Group_translate_ranks(group, size, mine.data(), world, theirs.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  return absl::StrCat(size == 1 ? "world rank " : "world ranks ", absl::StrJoin(theirs, ", "));
}

}  // namespace baton
