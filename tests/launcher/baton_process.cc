// The shared pieces of the end-to-end `baton` tests (see baton_process.h).
#include "tests/launcher/baton_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"

namespace baton::testing {

namespace fs = std::filesystem;

double SecondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path FreshRunDir(const std::string& stem, bool per_test) {
  std::string name = stem + "_" + std::to_string(::getpid());
  if (per_test) name += std::string("_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const fs::path dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void AllowMpiexecHere() {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
  setenv("OMPI_MCA_mpi_yield_when_idle", "1", 1);
  setenv("OMP_NUM_THREADS", "1", 1);
}

pid_t Spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
  fs::create_directories(out.parent_path());
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    std::FILE* o = std::fopen(out.c_str(), "w");
    std::FILE* e = err.empty() ? o : std::fopen(err.c_str(), "w");
    ::dup2(::fileno(o), 1);
    ::dup2(::fileno(e), 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::_Exit(127);
  }
  ::setpgid(pid, pid);  // also here: the group exists before the caller signals it
  return pid;
}

int WaitExit(pid_t pid, double limit_s) {
  const Clock::time_point t0 = Clock::now();
  while (SecondsSince(t0) < limit_s) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

Outcome RunToCompletion(const std::vector<std::string>& argv, const fs::path& out_file, const fs::path& err_file,
                        double limit_s) {
  const Clock::time_point t0 = Clock::now();
  const pid_t pid = Spawn(argv, out_file, err_file);
  Outcome r;
  r.rc = WaitExit(pid, limit_s);
  if (r.rc == -1) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  r.seconds = SecondsSince(t0);
  r.out = ReadFile(out_file);
  if (!err_file.empty()) r.err = ReadFile(err_file);
  return r;
}

int RunShell(const std::string& command, std::string* output) {
  output->clear();
  std::FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

absl::Status WriteCorpus(const fs::path& prefix, IndexDType dtype, const std::vector<std::vector<int32_t>>& docs) {
  absl::StatusOr<IndexedDatasetWriter> writer = IndexedDatasetWriter::Create(prefix.string(), dtype);
  if (!writer.ok()) return writer.status();
  for (const std::vector<int32_t>& ids : docs) {
    if (absl::Status s = writer->AddSequence(ids); !s.ok()) return s;
    writer->EndDocument();
  }
  return writer->Finish();
}

std::vector<std::vector<int32_t>> LetterDocuments(const LetterCorpus& spec) {
  std::vector<std::vector<int32_t>> docs;
  uint64_t x = spec.seed;
  for (int d = 0; d < spec.documents; ++d) {
    std::vector<int32_t> ids;
    if (spec.bos >= 0) ids.push_back(spec.bos);
    for (int i = 0; i < spec.min_length + d % spec.length_period; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      ids.push_back(spec.first + static_cast<int32_t>((x >> 33) % 26));
    }
    if (spec.eos >= 0) ids.push_back(spec.eos);
    docs.push_back(std::move(ids));
  }
  return docs;
}

absl::Status WriteLetterCorpus(const fs::path& prefix, const LetterCorpus& spec) {
  return WriteCorpus(prefix, spec.dtype, LetterDocuments(spec));
}

}  // namespace baton::testing
