// `baton train` surviving what clusters do to jobs, tested on real
// processes (one process, and 4 ranks under mpiexec with dp=2 x pp=2):
// SIGTERM, SIGUSR1 and SIGINT stop every rank after the same step with a
// checkpoint and exit 75, and the resumed run continues the loss curve of
// an uninterrupted run bit for bit; a SIGSTOPped rank is named after
// parallel.timeout_s and a SIGKILLed one ends the job within 30 s; a run
// killed mid-way resumes into a metrics file with each step once; resuming
// a finished run says so; unwritable output folders are refused before the
// first step. Each fault test measures and prints the time to exit.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/indexed_dataset.h"
#include "runtime/tokenizer.h"
#include "tests/launcher/baton_process.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using baton::testing::Clock;
using baton::testing::ReadFile;
using baton::testing::SecondsSince;
using baton::testing::WaitExit;

constexpr char kConfig[] = R"(
[model]
layers = 2
dim = 32
heads = 4
kv_heads = 2
ffn_dim = 48
vocab_size = 258
[data]
val_fraction = 0.05
[train]
steps = 100000
seq_len = 24
micro_batch_size = 2
global_batch_size = 8
lr = 1e-2
warmup_steps = 3
log_every = 1
[checkpoint]
every = 0
resume = "auto"
[output]
progress = "lines"
)";

class SurviveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = baton::testing::FreshRunDir("baton_survive_test");
    ByteTokenizer tok;
    const absl::Status corpus = baton::testing::WriteLetterCorpus(
        dir_ / "corpus", {.dtype = IndexDType::kUInt16, .documents = 400, .seed = 99, .first = 'a', .min_length = 20,
                          .length_period = 13, .bos = tok.bos_id(), .eos = tok.eos_id()});
    ASSERT_TRUE(corpus.ok()) << corpus;
    std::ofstream(dir_ / "job.toml") << kConfig;
    baton::testing::AllowMpiexecHere();
  }
  void TearDown() override {
    for (pid_t g : groups_) ::kill(-g, SIGKILL);  // whatever a failed test left running (our own groups)
    fs::remove_all(dir_);
  }

  // `baton train` for run folder `run`; ranks > 1: under mpiexec, dp=2 x pp=2.
  std::vector<std::string> Command(const std::string& run, int ranks, std::vector<std::string> sets) {
    std::vector<std::string> argv;
    if (ranks > 1) argv = {"mpiexec", "-n", std::to_string(ranks), "--bind-to", "none", "--oversubscribe"};
    argv.insert(argv.end(), {BATON_BINARY, "train", "--config", (dir_ / "job.toml").string(), "--set",
                             "data.path=" + (dir_ / "corpus").string(),
                             "checkpoint.dir=" + (dir_ / run / "ckpt").string(),
                             "output.metrics=" + (dir_ / run / "metrics.jsonl").string()});
    if (ranks > 1) argv.insert(argv.end(), {"parallel.dp=2", "parallel.pp=2"});
    argv.insert(argv.end(), sets.begin(), sets.end());
    return argv;
  }

  // Starts `argv` in its own process group, stdout and stderr to `log`;
  // TearDown kills the group if the test leaves it running.
  pid_t Spawn(const std::vector<std::string>& argv, const fs::path& log) {
    const pid_t pid = baton::testing::Spawn(argv, log);
    groups_.push_back(pid);
    return pid;
  }

  // Exit status (128+signal if killed), or -1 after 120 s.
  static int Run(const std::vector<std::string>& argv, const fs::path& log) {
    return baton::testing::RunToCompletion(argv, log).rc;
  }

  // The process of world rank `rank` among mpiexec's children.
  static pid_t RankPid(pid_t mpiexec, int rank) {
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string stat = ReadFile(e.path() / "stat");
      const size_t close = stat.rfind(')');
      if (close == std::string::npos) continue;
      int ppid = 0;
      char state = 0;
      if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != mpiexec) continue;
      std::string env = ReadFile(e.path() / "environ");
      if (env.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0') != std::string::npos) {
        return static_cast<pid_t>(std::stoi(name));
      }
    }
    return -1;
  }

  // step -> loss, and how many lines each step has.
  static std::map<int64_t, double> Losses(const fs::path& metrics, std::map<int64_t, int>* count = nullptr) {
    std::map<int64_t, double> out;
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object() || !j.contains("loss")) continue;
      out[j["step"].get<int64_t>()] = j["loss"].get<double>();
      if (count != nullptr) ++(*count)[j["step"].get<int64_t>()];
    }
    return out;
  }

  // Waits until the run's metrics show step >= `step` (the job is training).
  void WaitForStep(const std::string& run, int64_t step) {
    const Clock::time_point t0 = Clock::now();
    while (SecondsSince(t0) < 60) {
      auto l = Losses(dir_ / run / "metrics.jsonl");
      if (!l.empty() && l.rbegin()->first >= step) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL() << run << " did not reach step " << step;
  }

  // Signal `sig` to one process (ranks == 1) or to world rank 3 of 4: stop
  // with exit 75 and a checkpoint; resume 3 steps more; the curve equals an
  // uninterrupted run's, bit for bit.
  void StopAndResume(int sig, int ranks) {
    const pid_t job = Spawn(Command("cut", ranks, {"train.exit_interval=20000"}), dir_ / "cut.log");
    WaitForStep("cut", 2);
    const pid_t target = ranks > 1 ? RankPid(job, 3) : job;
    ASSERT_GT(target, 0);
    const Clock::time_point t0 = Clock::now();
    ::kill(target, sig);
    const int rc = WaitExit(job, 60);
    const double exit_s = SecondsSince(t0);
    const std::string log = ReadFile(dir_ / "cut.log");
    ASSERT_EQ(rc, 75) << log;
    std::printf("[ measured ] signal %d to %s: exit 75 after %.2f s\n", sig, ranks > 1 ? "rank 3 of 4" : "one process",
                exit_s);
    auto cut = Losses(dir_ / "cut" / "metrics.jsonl");
    ASSERT_FALSE(cut.empty());
    const int64_t s = cut.rbegin()->first;
    EXPECT_THAT(log, HasSubstr("stopped after step " + std::to_string(s)));
    char ckpt[32];
    std::snprintf(ckpt, sizeof(ckpt), "step_%08lld.h5", static_cast<long long>(s));
    ASSERT_TRUE(fs::exists(dir_ / "cut" / "ckpt" / ckpt)) << log;

    ASSERT_EQ(Run(Command("cut", ranks, {"train.exit_interval=3"}), dir_ / "resume.log"), 0)
        << ReadFile(dir_ / "resume.log");
    EXPECT_THAT(ReadFile(dir_ / "resume.log"), HasSubstr("at step " + std::to_string(s)));
    ASSERT_EQ(Run(Command("whole", ranks, {"train.exit_interval=" + std::to_string(s + 3)}), dir_ / "whole.log"), 0)
        << ReadFile(dir_ / "whole.log");
    std::map<int64_t, int> count;
    auto resumed = Losses(dir_ / "cut" / "metrics.jsonl", &count);
    auto whole = Losses(dir_ / "whole" / "metrics.jsonl");
    ASSERT_EQ(whole.size(), static_cast<size_t>(s + 3));
    ASSERT_EQ(resumed.size(), whole.size());
    for (const auto& [step, loss] : whole) {
      EXPECT_EQ(resumed[step], loss) << "step " << step;  // bitwise (doubles)
      EXPECT_EQ(count[step], 1) << "step " << step;
    }
  }

  fs::path dir_;
  std::vector<pid_t> groups_;
};

TEST_F(SurviveTest, SigtermOneProcess) { StopAndResume(SIGTERM, 1); }
TEST_F(SurviveTest, Sigusr1OneProcess) { StopAndResume(SIGUSR1, 1); }
TEST_F(SurviveTest, SigintOneProcess) { StopAndResume(SIGINT, 1); }
TEST_F(SurviveTest, SigtermOneOfFourRanks) { StopAndResume(SIGTERM, 4); }
TEST_F(SurviveTest, Sigusr1OneOfFourRanks) { StopAndResume(SIGUSR1, 4); }
TEST_F(SurviveTest, SigintOneOfFourRanks) { StopAndResume(SIGINT, 4); }

// kill -STOP: the peers time out after parallel.timeout_s and name the rank.
TEST_F(SurviveTest, StoppedRankIsNamed) {
  const pid_t job = Spawn(Command("stop", 4, {"parallel.timeout_s=3"}), dir_ / "stop.log");
  WaitForStep("stop", 2);
  const pid_t target = RankPid(job, 2);
  ASSERT_GT(target, 0);
  const Clock::time_point t0 = Clock::now();
  ::kill(target, SIGSTOP);
  const int rc = WaitExit(job, 30);
  const double exit_s = SecondsSince(t0);
  ::kill(target, SIGCONT);
  const std::string log = ReadFile(dir_ / "stop.log");
  ASSERT_GT(rc, 0) << log;
  std::printf("[ measured ] kill -STOP rank 2 of 4, parallel.timeout_s=3: exit %d after %.2f s\n", rc, exit_s);
  EXPECT_THAT(log, HasSubstr("rank 2 does not answer"));
  EXPECT_THAT(log, HasSubstr("no progress in 3 s (parallel.timeout_s)"));
}

// kill -9 mid-step and at start-up (after MPI_Init: a rank killed before it
// is reported by Open MPI without its number): every other rank is gone
// within 30 s, and the dead rank is named.
TEST_F(SurviveTest, KilledRankEndsTheJob) {
  for (bool startup : {false, true}) {
    const std::string run = startup ? "kill_startup" : "kill_midstep";
    const pid_t job = Spawn(Command(run, 4, {"parallel.timeout_s=5"}), dir_ / (run + ".log"));
    pid_t target = -1;
    if (startup) {  // after MPI_Init (rank 0's "ranks:" line), before the first step
      for (int i = 0; i < 3000; ++i, std::this_thread::sleep_for(std::chrono::milliseconds(2))) {
        if (ReadFile(dir_ / (run + ".log")).find("ranks: 4") != std::string::npos) break;
      }
      target = RankPid(job, 1);
    } else {
      WaitForStep(run, 2);
      target = RankPid(job, 1);
    }
    ASSERT_GT(target, 0);
    const Clock::time_point t0 = Clock::now();
    ::kill(target, SIGKILL);
    const int rc = WaitExit(job, 30);
    const double exit_s = SecondsSince(t0);
    const std::string log = ReadFile(dir_ / (run + ".log"));
    ASSERT_GT(rc, 0) << log;
    std::printf("[ measured ] kill -9 rank 1 of 4 at %s: exit %d after %.2f s\n", startup ? "start-up" : "mid-step",
                rc, exit_s);
    EXPECT_THAT(log, ::testing::AnyOf(HasSubstr("rank 1 does not answer"), HasSubstr("process rank 1 ")));
  }
}

// A run killed between checkpoints redoes some steps on resume: the
// metrics file keeps each step once, and a finished run says so.
TEST_F(SurviveTest, KilledRunResumesAsOneCurve) {
  const pid_t job = Spawn(Command("crash", 1, {"checkpoint.every=4", "train.exit_interval=20000"}), dir_ / "a.log");
  WaitForStep("crash", 6);
  ::kill(job, SIGKILL);
  ASSERT_EQ(WaitExit(job, 30), 128 + SIGKILL);
  const int64_t reached = Losses(dir_ / "crash" / "metrics.jsonl").rbegin()->first;
  const int64_t target = reached + 4;
  ASSERT_EQ(Run(Command("crash", 1, {"checkpoint.every=4", "train.steps=" + std::to_string(target)}),
                dir_ / "b.log"),
            0)
      << ReadFile(dir_ / "b.log");
  std::map<int64_t, int> count;
  auto l = Losses(dir_ / "crash" / "metrics.jsonl", &count);
  ASSERT_EQ(l.size(), static_cast<size_t>(target));
  for (const auto& [step, n] : count) EXPECT_EQ(n, 1) << "step " << step;

  ASSERT_EQ(Run(Command("crash", 1, {"train.steps=" + std::to_string(target)}), dir_ / "c.log"), 0);
  const std::string done = ReadFile(dir_ / "c.log");
  EXPECT_THAT(done, HasSubstr("nothing to do: the run resumed at step " + std::to_string(target)));
  EXPECT_THAT(done, ::testing::Not(HasSubstr("tokens/s")));
}

// kill -9 at any moment while a checkpoint is written every step (so many
// kills land mid-write): the resume picks the newest complete checkpoint
// and the curve still equals the uninterrupted run's, bit for bit.
TEST_F(SurviveTest, KillsDuringCheckpointWritesResumeBitExact) {
  const std::vector<std::string> sets = {"checkpoint.every=1", "checkpoint.keep=2"};
  int64_t reached = 0;
  for (int kill = 0; kill < 5; ++kill) {
    std::vector<std::string> run_sets = sets;
    run_sets.push_back("train.exit_interval=20000");
    const pid_t job = Spawn(Command("cut", 1, run_sets), dir_ / "cut.log");
    WaitForStep("cut", reached + 2);
    std::this_thread::sleep_for(std::chrono::microseconds(1700 * kill));  // a different phase each time
    ::kill(job, SIGKILL);
    ASSERT_EQ(WaitExit(job, 30), 128 + SIGKILL);
    reached = Losses(dir_ / "cut" / "metrics.jsonl").rbegin()->first;
  }
  const int64_t end = reached + 2;
  std::vector<std::string> last = sets;
  last.push_back("train.exit_interval=2");
  // The newest complete checkpoint may be a step or two before `reached`: run to `end` in two goes.
  ASSERT_EQ(Run(Command("cut", 1, last), dir_ / "r1.log"), 0) << ReadFile(dir_ / "r1.log");
  while (Losses(dir_ / "cut" / "metrics.jsonl").rbegin()->first < end) {
    ASSERT_EQ(Run(Command("cut", 1, last), dir_ / "r2.log"), 0) << ReadFile(dir_ / "r2.log");
  }
  const int64_t got = Losses(dir_ / "cut" / "metrics.jsonl").rbegin()->first;
  ASSERT_EQ(Run(Command("whole", 1, {"train.exit_interval=" + std::to_string(got)}), dir_ / "w.log"), 0);
  std::map<int64_t, int> count;
  auto cut = Losses(dir_ / "cut" / "metrics.jsonl", &count);
  auto whole = Losses(dir_ / "whole" / "metrics.jsonl");
  ASSERT_EQ(cut.size(), whole.size());
  for (const auto& [step, loss] : whole) {
    EXPECT_EQ(cut[step], loss) << "step " << step;
    EXPECT_EQ(count[step], 1) << "step " << step;
  }
}

// checkpoint.dir and output.metrics that cannot be written are refused
// before the first step (exit 2, one line naming the key), not found at
// the first checkpoint after the training work.
TEST_F(SurviveTest, UnwritableOutputsAreRefusedBeforeTheFirstStep) {
  std::ofstream(dir_ / "a_file") << "x";  // a folder below a plain file cannot exist (root or not)
  const std::string bad = (dir_ / "a_file" / "sub").string();
  for (const std::string& key : {std::string("checkpoint.dir"), std::string("output.metrics")}) {
    const std::string value = key == "checkpoint.dir" ? bad : bad + "/metrics.jsonl";
    const fs::path log = dir_ / (key + ".log");
    ASSERT_EQ(Run(Command("bad", 1, {key + "=" + value}), log), 2) << ReadFile(log);
    const std::string out = ReadFile(log);
    EXPECT_THAT(out, HasSubstr("baton: error: " + key + ": cannot create " + bad));
    EXPECT_THAT(out, ::testing::Not(HasSubstr("step 1/")));
  }
}

}  // namespace
}  // namespace baton
