// What the end-to-end tests of `baton` (tests/launcher/*_test.cc that run
// the real binary) share: a fresh temporary run folder, the binary started
// as a child in its own process group with its output to files, waited for
// with a time limit, or run to completion through the shell; files read
// whole; and tiny indexed corpora written from a seeded generator. One copy,
// so a fix to how a child is reaped or a corpus is drawn reaches every test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/indexed_dataset.h"

namespace baton::testing {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t0);

// The whole file ("" when it cannot be read: a file not yet written).
std::string ReadFile(const std::filesystem::path& path);

// An empty folder <tmp>/<stem>_<pid>, with `_<test name>` appended when
// `per_test` (each TEST_F its own folder), emptied first if left over.
std::filesystem::path FreshRunDir(const std::string& stem, bool per_test = true);

// mpiexec as root on a small machine (CI): allowed, oversubscribed, idle
// ranks yield, one OpenMP thread per rank. Set in this process's
// environment, so every child started afterwards inherits it.
void AllowMpiexecHere();

// Starts argv (argv[0] looked up on PATH) in a process group of its own
// (so a test can signal or kill the whole job); stdout goes to `out`,
// stderr to `err`, or to `out` as well when `err` is empty. `out`'s folder
// is made when missing.
pid_t Spawn(const std::vector<std::string>& argv, const std::filesystem::path& out,
            const std::filesystem::path& err = {});

// The child's exit status, 128 + the signal when killed, or -1 when it is
// still running after `limit_s` (it is left running: the caller decides).
int WaitExit(pid_t pid, double limit_s);

struct Outcome {
  int rc = -1;  // as WaitExit: -1 after the time limit (the group is then killed)
  double seconds = 0;  // start to exit
  std::string out, err;
};

// Spawn, then WaitExit; past `limit_s` the child's process group is
// killed. stdout and stderr are captured in `out_file` and `err_file`
// (the same file when `err_file` is empty: then Outcome::err is empty).
Outcome RunToCompletion(const std::vector<std::string>& argv, const std::filesystem::path& out_file,
                        const std::filesystem::path& err_file = {}, double limit_s = 120);

// `command` through /bin/sh (redirections allowed); its stdout in
// *output. The exit status, or -1 when it did not exit normally.
int RunShell(const std::string& command, std::string* output);

// Writes `docs` (one id sequence per document) as <prefix>.{bin,idx}.
absl::Status WriteCorpus(const std::filesystem::path& prefix, IndexDType dtype,
                         const std::vector<std::vector<int32_t>>& docs);

// Documents of random letters, a 64-bit LCG seeded with `seed` drawing
// each id as first + (x >> 33) % 26: document d has min_length + d %
// length_period of them, between bos and eos ids when those are >= 0.
struct LetterCorpus {
  IndexDType dtype = IndexDType::kUInt16;
  int documents = 200;
  uint64_t seed = 7;
  int32_t first = 'a';
  int min_length = 30, length_period = 7;
  int32_t bos = -1, eos = -1;  // -1: none
};
std::vector<std::vector<int32_t>> LetterDocuments(const LetterCorpus& spec);
absl::Status WriteLetterCorpus(const std::filesystem::path& prefix, const LetterCorpus& spec);

}  // namespace baton::testing
