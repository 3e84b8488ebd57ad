// `baton infer` end to end on a tiny random checkpoint (CPU): both input
// formats round trip with one output line per input line and per-line
// error records; a second run over the same output answers nothing twice;
// a run killed with SIGKILL mid-file and restarted leaves exactly one line
// per input id, with the tokens an uninterrupted run gives; two
// data-parallel ranks give the same results as one.
#include "launcher/infer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launcher/config.h"
#include "nlohmann/json.hpp"
#include "runtime/model.h"

namespace baton {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string Dir() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "/infer_test_" + std::to_string(::getpid());
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// A random byte-level model (2 layers, dim 64, GQA) as a baton checkpoint.
std::string TinyCheckpoint() {
  static const std::string path = [] {
    JobConfig job;
    job.model.layers = 2;
    job.model.dim = 64;
    job.model.heads = 4;
    job.model.kv_heads = 2;
    job.model.ffn_dim = 128;
    job.model.vocab_size = 258;
    job.model.init_std = 0.2f;
    job.train.seq_len = 256;
    job.source_text = JobConfigToToml(job);
    absl::StatusOr<Model> m = Model::Create(job.model, DType::kF32);
    BATON_CHECK(m.ok());
    m->Init(5);
    CheckpointData data;
    data.step = 1;
    for (const Param& p : m->params()) data.tensors.push_back({"params/" + p.name, p.value});
    data.attrs["config"] = job.source_text;
    const std::string file = Dir() + "/tiny.h5";
    BATON_CHECK(WriteCheckpoint(file, data).ok());
    return file;
  }();
  return path;
}

std::vector<json> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

InferConfig SmallConfig() {
  InferConfig c;
  c.kv_cache_bytes = 4 << 20;
  c.max_batch = 4;
  c.progress = "lines";
  return c;
}

TEST(Infer, BatonLinesRoundTripWithPerLineErrors) {
  const std::string in = Dir() + "/baton_in.jsonl", out = Dir() + "/baton_out.jsonl";
  WriteText(in,
            "{\"id\": \"a\", \"prompt\": \"Hello\", \"max_new_tokens\": 6, \"temperature\": 0}\n"
            "{\"id\": 2, \"tokens\": [256, 72, 105], \"max_new_tokens\": 4, \"seed\": 9}\n"
            "{\"id\": \"bad-json\", \"prompt\": \n"
            "\n"
            "{\"id\": \"a\", \"prompt\": \"again\"}\n"
            "{\"id\": \"t\", \"prompt\": \"x\", \"top_p\": \"high\"}\n"
            "{\"id\": \"long\", \"prompt\": \"" + std::string(300, 'z') + "\"}\n"
            "{\"id\": \"c\", \"prompt\": \"More text\", \"max_new_tokens\": 5, \"temperature\": 0.7, \"top_k\": 20}\n");
  fs::remove(out);
  InferSummary s;
  ASSERT_TRUE(RunInfer({TinyCheckpoint(), in, out}, SmallConfig(), 0, 1, &s).ok());
  EXPECT_EQ(s.requests, 3);
  EXPECT_EQ(s.errors, 4);
  const std::vector<json> lines = ReadLines(out);
  ASSERT_EQ(lines.size(), 7u);  // one per non-empty input line
  std::map<std::string, json> by_key;
  for (const json& j : lines) by_key[j.contains("error") ? "line " + j["line"].dump() : j["id"].dump()] = j;
  EXPECT_EQ(by_key["\"a\""]["completion_tokens"], 6);
  EXPECT_EQ(by_key["\"a\""]["finish_reason"], "length");
  EXPECT_EQ(by_key["\"a\""]["prompt_tokens"], 6);  // BOS + 5 bytes
  EXPECT_EQ(by_key["2"]["tokens"].size(), 4u);
  EXPECT_EQ(by_key["2"]["prompt_tokens"], 3);
  EXPECT_TRUE(by_key["\"c\""]["text"].is_string());
  EXPECT_GE(by_key["\"c\""]["latency_s"].get<double>(), by_key["\"c\""]["ttft_s"].get<double>());
  EXPECT_THAT(by_key["line 3"]["error"].get<std::string>(), HasSubstr("line 3: malformed JSON"));
  EXPECT_THAT(by_key["line 5"]["error"].get<std::string>(), HasSubstr("duplicate id \"a\", first seen on line 1"));
  EXPECT_THAT(by_key["line 6"]["error"].get<std::string>(), HasSubstr("line 6 (id \"t\"): 'top_p' must be a number"));
  EXPECT_THAT(by_key["line 7"]["error"].get<std::string>(),
              HasSubstr("line 7 (id \"long\"): the prompt has 301 tokens; the model's context is 256"));
  // A second run over the same output answers nothing again.
  InferSummary again;
  ASSERT_TRUE(RunInfer({TinyCheckpoint(), in, out}, SmallConfig(), 0, 1, &again).ok());
  EXPECT_EQ(again.skipped, 7);
  EXPECT_EQ(again.requests + again.errors, 0);
  EXPECT_EQ(ReadLines(out).size(), 7u);
}

// A KV cache of 4 blocks of 16 tokens (64 tokens) for 6 requests growing
// to 40 tokens each: sequences are preempted and recomputed, none fails;
// only a prompt larger than the whole cache gets an error line.
TEST(Infer, ASmallCacheFailsNoRequestButAPromptLargerThanIt) {
  const std::string in = Dir() + "/small_in.jsonl", out = Dir() + "/small_out.jsonl";
  std::string text;
  for (int i = 0; i < 6; ++i) {
    text += absl::StrCat("{\"id\": ", i, ", \"prompt\": \"", std::string(10 + i, 'a' + i), "\", \"max_new_tokens\": 24}\n");
  }
  text += "{\"id\": \"huge\", \"prompt\": \"" + std::string(100, 'h') + "\"}\n";
  WriteText(in, text);
  fs::remove(out);
  InferConfig c = SmallConfig();
  c.block_size = 16;
  c.kv_cache_bytes = 4 * 2 * 2 * 16 * 2 * 16 * 4;  // 4 blocks: K and V, 2 layers, 16 tokens, 2 kv heads, dim 16, f32
  InferSummary s;
  absl::Status st = RunInfer({TinyCheckpoint(), in, out}, c, 0, 1, &s);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(s.kv_capacity_tokens, 64);
  EXPECT_EQ(s.requests, 6);
  EXPECT_EQ(s.errors, 1);
  EXPECT_GT(s.preemptions, 0);
  for (const json& j : ReadLines(out)) {
    if (j.contains("error")) {
      EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("line 7 (id \"huge\"): the prompt has 101 tokens but the KV cache holds 64"));
    } else {
      EXPECT_EQ(j["completion_tokens"], 24) << j.dump();
    }
  }
}

TEST(Infer, OpenAiBatchLinesRoundTrip) {
  const std::string in = Dir() + "/openai_in.jsonl", out = Dir() + "/openai_out.jsonl";
  auto line = [](const std::string& id, const std::string& url, const std::string& body) {
    return absl::StrCat("{\"custom_id\": \"", id, "\", \"method\": \"POST\", \"url\": \"", url, "\", \"body\": ", body,
                        "}\n");
  };
  WriteText(in, line("r1", "/v1/completions", R"({"model": "tiny", "prompt": "Once upon", "max_tokens": 5, "temperature": 0})") +
                    line("r2", "/v1/chat/completions", R"({"model": "tiny", "messages": []})") +
                    line("r3", "/v1/completions", R"({"model": "tiny", "prompt": [256, 65], "max_tokens": 3, "seed": 4})"));
  fs::remove(out);
  InferSummary s;
  absl::Status st = RunInfer({TinyCheckpoint(), in, out}, SmallConfig(), 0, 1, &s);
  ASSERT_TRUE(st.ok()) << st;
  std::map<std::string, json> by_id;
  for (const json& j : ReadLines(out)) by_id[j["custom_id"].get<std::string>()] = j;
  ASSERT_EQ(by_id.size(), 3u);
  const json& r1 = by_id["r1"];
  EXPECT_TRUE(r1["error"].is_null());
  EXPECT_EQ(r1["response"]["status_code"], 200);
  EXPECT_EQ(r1["response"]["body"]["model"], "tiny");
  EXPECT_EQ(r1["response"]["body"]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r1["response"]["body"]["usage"]["completion_tokens"], 5);
  EXPECT_EQ(r1["response"]["body"]["usage"]["prompt_tokens"], 10);  // BOS + "Once upon"
  EXPECT_EQ(by_id["r3"]["response"]["body"]["usage"]["total_tokens"], 5);
  EXPECT_TRUE(by_id["r2"]["response"].is_null());
  EXPECT_THAT(by_id["r2"]["error"]["message"].get<std::string>(), HasSubstr("line 2 (id \"r2\"): url /v1/chat/completions"));
}

// Starts `baton infer` in the background; returns its pid.
pid_t Spawn(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    std::string bin = BATON_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

size_t CountLines(const std::string& path) {
  std::ifstream in(path);
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
}

TEST(Infer, RestartAfterKill9LeavesOneLinePerId) {
  const int n = 150;
  const std::string in = Dir() + "/kill_in.jsonl", out = Dir() + "/kill_out.jsonl", ref = Dir() + "/kill_ref.jsonl";
  std::string text;
  for (int i = 0; i < n; ++i) {
    text += absl::StrCat("{\"id\": ", i, ", \"prompt\": \"prompt number ", i, "\", \"max_new_tokens\": 64}\n");
  }
  WriteText(in, text);
  fs::remove(out);
  fs::remove(ref);
  const std::vector<std::string> common = {"infer", "--checkpoint", TinyCheckpoint(), "--prompts", in,
                                           "--set", "infer.max_batch=1", "infer.kv_cache_bytes=4194304"};
  auto with_out = [&](const std::string& o) {
    std::vector<std::string> a = common;
    a.insert(a.begin() + 5, {"--out", o});
    return a;
  };
  const pid_t pid = Spawn(with_out(out));
  size_t at_kill = 0;
  for (int i = 0; i < 20000 && at_kill < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    at_kill = CountLines(out);
  }
  ::kill(pid, SIGKILL);
  const int killed = Wait(pid);
  ASSERT_TRUE(WIFSIGNALED(killed)) << "the run ended before it was killed; lines " << at_kill;
  const size_t after_kill = CountLines(out);
  ASSERT_LT(after_kill, static_cast<size_t>(n)) << "killed too late to test a restart";
  { std::ofstream(out, std::ios::app) << "{\"id\": 999, \"text\": \"a torn li"; }  // a write cut by a crash
  const int restarted = Wait(Spawn(with_out(out)));
  ASSERT_TRUE(WIFEXITED(restarted) && WEXITSTATUS(restarted) == 0);
  ASSERT_EQ(Wait(Spawn(with_out(ref))), 0);
  std::map<int, json> got, want;
  for (const json& j : ReadLines(out)) {
    ASSERT_TRUE(got.emplace(j["id"].get<int>(), j).second) << "duplicate id " << j["id"];
  }
  for (const json& j : ReadLines(ref)) want.emplace(j["id"].get<int>(), j);
  ASSERT_EQ(got.size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(got.count(i)) << "id " << i << " lost";
    EXPECT_EQ(got[i]["tokens"], want[i]["tokens"]) << "id " << i;  // seeds follow the id: a restart redraws the same
  }
}

TEST(Infer, TwoDataParallelRanksGiveTheSameResults) {
  if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "no mpiexec";
  const std::string in = Dir() + "/dp_in.jsonl", one = Dir() + "/dp_one.jsonl", two = Dir() + "/dp_two.jsonl";
  std::string text;
  for (int i = 0; i < 9; ++i) text += absl::StrCat("{\"id\": ", i, ", \"prompt\": \"dp ", i, "\", \"max_new_tokens\": 7}\n");
  WriteText(in, text);
  fs::remove(one);
  fs::remove(two);
  const std::string args = absl::StrCat(" infer --checkpoint ", TinyCheckpoint(), " --prompts ", in,
                                        " --set infer.kv_cache_bytes=4194304 --out ");
  ASSERT_EQ(std::system((std::string(BATON_BINARY) + args + one + " >/dev/null").c_str()), 0);
  const std::string mpi = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                          "OMPI_MCA_mpi_yield_when_idle=1 mpiexec --oversubscribe --allow-run-as-root -n 2 ";
  ASSERT_EQ(std::system((mpi + BATON_BINARY + args + two + " >/dev/null").c_str()), 0);
  std::map<int, json> a, b;
  for (const json& j : ReadLines(one)) a[j["id"].get<int>()] = j["tokens"];
  for (const json& j : ReadLines(two)) ASSERT_TRUE(b.emplace(j["id"].get<int>(), j["tokens"]).second);
  EXPECT_EQ(a.size(), 9u);
  EXPECT_EQ(a, b);
}

// tp=2 x pp=2 on 4 ranks, and dp=2 x pp=2 x tp=2 on 8, write the same greedy
// tokens as one rank (f64: no near-tie can flip between layouts).
TEST(Infer, TensorAndPipelineParallelGiveTheSameTokens) {
  if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "no mpiexec";
  const std::string in = Dir() + "/tp_in.jsonl", one = Dir() + "/tp_one.jsonl";
  std::string text;
  for (int i = 0; i < 7; ++i) text += absl::StrCat("{\"id\": ", i, ", \"prompt\": \"tp pp ", i, "\", \"max_new_tokens\": ", 4 + i, "}\n");
  WriteText(in, text);
  const std::string args = absl::StrCat(" infer --checkpoint ", TinyCheckpoint(), " --prompts ", in,
                                        " --set infer.kv_cache_bytes=4194304 infer.dtype=f64 infer.temperature=0"
                                        " infer.max_batch=3");
  fs::remove(one);
  ASSERT_EQ(std::system((std::string(BATON_BINARY) + args + " --out " + one + " >/dev/null").c_str()), 0);
  std::map<int, json> want;
  for (const json& j : ReadLines(one)) want[j["id"].get<int>()] = j["tokens"];
  ASSERT_EQ(want.size(), 7u);
  for (const auto& [np, layout] : {std::pair{4, " parallel.tp=2 parallel.pp=2"}, {8, " parallel.tp=2 parallel.pp=2"}}) {
    SCOPED_TRACE(absl::StrCat("-n ", np, layout));
    const std::string out = absl::StrCat(Dir(), "/tp_", np, ".jsonl");
    fs::remove(out);
    const std::string mpi = absl::StrCat("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                                         "OMPI_MCA_mpi_yield_when_idle=1 mpiexec --oversubscribe --allow-run-as-root -n ", np, " ");
    ASSERT_EQ(std::system((mpi + BATON_BINARY + args + layout + " --out " + out + " >/dev/null").c_str()), 0);
    std::map<int, json> got;
    for (const json& j : ReadLines(out)) ASSERT_TRUE(got.emplace(j["id"].get<int>(), j["tokens"]).second);
    EXPECT_EQ(got, want);
  }
}

}  // namespace
}  // namespace baton
