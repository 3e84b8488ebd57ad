// Stop signals as a flag, agreed on by every rank (see signals.h).
#include "launcher/signals.h"

#include <signal.h>


#include "absl/strings/str_cat.h"

namespace baton {
namespace {

volatile sig_atomic_t g_signal = 0;
bool g_agreed = false;

extern "C" void OnStopSignal(int sig) {
  if (sig == SIGINT && g_signal == SIGINT) {  // the second Ctrl-C: stop now
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  g_signal = sig;
}

}  // namespace

void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a read or write in progress carries on
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &sa, nullptr);
}

int ReceivedStopSignal() { return g_signal; }

absl::StatusOr<bool> AgreeToStop(Communicator* world) {
  if (g_agreed) return true;
  const int32_t mine = g_signal != 0 ? 1 : 0;
  if (world == nullptr || world->size() == 1) {
    g_agreed = mine != 0;
    return g_agreed;
  }
  Tensor flags = Tensor::Empty({1}, DType::kI32);
  flags.data<int32_t>()[0] = mine;
  BATON_RETURN_IF_ERROR(world->AllReduceSum(flags));
  g_agreed = flags.data<int32_t>()[0] > 0;
  return g_agreed;
}

bool StopAgreed() { return g_agreed; }

std::string StopSignalName(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    case 0: return "a stop signal on another rank";
    default: return absl::StrCat("signal ", sig);
  }
}

void ResetStopForTest() {
  g_signal = 0;
  g_agreed = false;
}

}  // namespace baton
