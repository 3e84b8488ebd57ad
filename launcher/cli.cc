// Command-line dispatch (see cli.h). Parses argv into a command and its
// flags, runs it, and turns a Status into one line on stderr and an exit
// status: InvalidArgument / NotFound / FailedPrecondition are bad input
// (2), anything else a run-time failure (1).
#include "launcher/cli.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "launcher/config.h"
#include "launcher/data_inspect.h"
#include "launcher/distill.h"
#include "launcher/eval.h"
#include "launcher/hf_commands.h"
#include "launcher/infer.h"
#include "launcher/mpi_session.h"
#include "launcher/plan_command.h"
#include "launcher/preflight.h"
#include "launcher/signals.h"
#include "launcher/tokenizer_commands.h"
#include "launcher/train.h"
#include "parallel/mesh.h"
#include "parallel/peer_watch.h"
#include "parallel/ucx_p2p.h"
#include "runtime/corpus.h"
#include "runtime/tokenizer.h"

namespace baton {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  baton train --config FILE [--set section.key=value ...]\n"
    "  baton plan --config FILE --gpus N [--gpus-per-node G] [--gpu h100-80g|h200-141g|PROFILE.json]\n"
    "      [--top K] [--json] [--explain N [--trace FILE]]   |   baton plan --calibrate --out PROFILE.json\n"
    "  baton data tokenize --input FILE... --output PREFIX [--tokenizer tokenizer.json]\n"
    "  baton data train-tokenizer --input FILE... --vocab-size N --output tokenizer.json\n"
    "      [--special-tokens A,B] [--min-frequency N]\n"
    "  baton data encode --tokenizer T --input FILE... [--output FILE] [--pieces]\n"
    "  baton data inspect PREFIX [--vocab-size V] [--tokenizer tokenizer.json] [--doc N...]\n"
    "      [--sample N... --seq-len T [--seed S] [--val-fraction F]] [--max-tokens K] [--ids]\n"
    "  baton infer --checkpoint CKPT --prompts IN.jsonl --out OUT.jsonl [--config infer.toml] [--set infer.key=value ...]\n"
    "  baton import --hf DIR --out CKPT\n"
    "  baton export --checkpoint CKPT --format hf --out DIR [--dtype f32|bf16]\n"
    "  baton parity-dump --checkpoint CKPT --tokens FILE --out FILE   (developer tool)\n"
    "  baton distill --config FILE [--set section.key=value ...] [--dump-teacher]\n"
    "  baton eval --checkpoint CKPT --data PREFIX [--teacher CKPT2] [--batches N] [--seq-len T] [--json FILE]\n";

int Fail(const absl::Status& s) {
  std::string msg(s.message());
  std::fprintf(stderr, "baton: error: %s\n", msg.c_str());
  return ExitCodeFor(s);
}

int Usage(const std::string& why) {
  std::fprintf(stderr, "baton: error: %s\n%s", why.c_str(), kUsage);
  return 2;
}

// Collects the values after a flag until the next "--flag".
std::vector<std::string> Values(const std::vector<std::string>& args, size_t* i) {
  std::vector<std::string> out;
  while (*i + 1 < args.size() && !absl::StartsWith(args[*i + 1], "--")) out.push_back(args[++*i]);
  return out;
}

int RunDataTokenize(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  std::string output, tokenizer_path;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--input") {
      std::vector<std::string> v = Values(args, &i);
      inputs.insert(inputs.end(), v.begin(), v.end());
    } else if (args[i] == "--output") {
      std::vector<std::string> v = Values(args, &i);
      if (v.size() != 1) return Usage("--output takes one PREFIX");
      output = v[0];
    } else if (args[i] == "--tokenizer") {
      std::vector<std::string> v = Values(args, &i);
      if (v.size() != 1) return Usage("--tokenizer takes one tokenizer.json (or 'byte')");
      tokenizer_path = v[0];
    } else {
      return Usage(absl::StrCat("unknown flag '", args[i], "' for 'data tokenize'"));
    }
  }
  if (inputs.empty()) return Usage("data tokenize: --input FILE... is required");
  if (output.empty()) return Usage("data tokenize: --output PREFIX is required");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = TokenizerFromFlag(tokenizer_path);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  absl::StatusOr<TokenizeStats> stats = TokenizeFiles(inputs, **tokenizer, output);
  if (!stats.ok()) return Fail(stats.status());
  std::printf("tokenized %lld files: %lld documents, %lld bytes -> %lld tokens in %s.bin/.idx\n",
              static_cast<long long>(stats->files), static_cast<long long>(stats->documents),
              static_cast<long long>(stats->bytes), static_cast<long long>(stats->tokens), output.c_str());
  return 0;
}

}  // namespace

int RunTrainCommand(const std::vector<std::string>& args) {
  std::string config_path;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      std::vector<std::string> v = Values(args, &i);
      if (v.size() != 1) return Usage("--config takes one FILE");
      config_path = v[0];
    } else if (args[i] == "--set") {
      std::vector<std::string> v = Values(args, &i);
      if (v.empty()) return Usage("--set needs section.key=value");
      overrides.insert(overrides.end(), v.begin(), v.end());
    } else {
      return Usage(absl::StrCat("unknown flag '", args[i], "' for 'train'"));
    }
  }
  if (config_path.empty()) return Usage("train: --config FILE is required");
  InstallStopHandlers();  // before MPI_Init: a signal during start-up stops after the first step
  MpiSession mpi;
  absl::StatusOr<JobConfig> config = LoadJobConfig(config_path, overrides);
  if (!config.ok()) return mpi.Fail(config.status());
  MeshComms comms;
  if (mpi.size() > 1) {
    const ParallelConfig& p = config->parallel;
    // Deadlines on every wait from here on: a dead or stopped peer is named, not waited for.
    if (absl::Status w = EnablePeerWatch(MPI_COMM_WORLD, p.timeout_s); !w.ok()) return mpi.Fail(w);
    absl::StatusOr<Mesh> mesh = Mesh::Create({p.dp, p.pp, p.tp}, mpi.size(), mpi.rank());
    if (!mesh.ok()) return mpi.Fail(mesh.status());
    // parallel.p2p picks the pipeline transport; every collective stays on MPI.
    absl::StatusOr<MeshComms> c = p.p2p == P2pTransport::kUcx ? CreateMeshCommsWithUcxPipeline(*mesh)
                                                              : CreateMpiMeshComms(*mesh);
    if (!c.ok()) return mpi.Fail(c.status());
    comms = std::move(*c);
  }
  TrainSummary summary;
  absl::Status s;
  try {
    s = Train(*config, &summary, mpi.size() > 1 ? &comms : nullptr);
  } catch (const std::bad_alloc&) {  // one line saying what to lower, not "terminate called ..."
    s = absl::ResourceExhaustedError(OutOfMemoryAdvice(*config));
  }
  if (s.ok()) {
    s = comms.Close();
  }
  if (!s.ok()) return mpi.Fail(s);
  if (StopAgreed()) {
    if (mpi.rank() == 0) {
      std::printf("stopped after step %lld on %s: %s; exit %d asks Slurm to requeue\n",
                  static_cast<long long>(summary.last_step), StopSignalName(ReceivedStopSignal()).c_str(),
                  summary.checkpoint.empty() ? "no checkpoint.dir, nothing saved" : summary.checkpoint.c_str(),
                  kRequeueExitCode);
    }
    return kRequeueExitCode;
  }
  if (mpi.rank() != 0) return 0;
  if (summary.last_step < summary.first_step) {
    std::printf("nothing to do: the run resumed at step %lld and train.steps=%lld (raise train.steps to go on, "
                "or set checkpoint.resume=none to start over)\n",
                static_cast<long long>(summary.first_step - 1), static_cast<long long>(config->train.steps));
    return 0;
  }
  std::printf("done: steps %lld-%lld in %.1f s, loss %.4f -> %.4f", static_cast<long long>(summary.first_step),
              static_cast<long long>(summary.last_step), summary.seconds, summary.first_loss, summary.last_loss);
  if (summary.last_val_loss >= 0) std::printf(", val_loss %.4f", summary.last_val_loss);
  std::printf(", %.0f tokens/s", summary.tokens_per_s);
  if (summary.peak_reserved > 0) {  // on the GPU
    std::printf(", MFU %.3f (of output.peak_tflops=%g), peak memory %.2f GiB allocated / %.2f GiB reserved",
                summary.mfu, config->output.peak_tflops, summary.peak_allocated / 1073741824.0,
                summary.peak_reserved / 1073741824.0);
  }
  std::printf("\n");
  if (!summary.checkpoint.empty()) std::printf("checkpoint: %s\n", summary.checkpoint.c_str());
  if (!config->output.metrics.empty()) std::printf("metrics: %s\n", config->output.metrics.c_str());
  return 0;
}

int RunCli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage("no command given");
  const std::string cmd = args[0];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::printf("%s", kUsage);
    return 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "train") return RunTrainCommand(rest);
  if (cmd == "infer") return RunInferCommand(rest);
  if (cmd == "distill") return RunDistillCommand(rest);
  if (cmd == "plan") return RunPlanCommand(rest);
  if (cmd == "import" || cmd == "export" || cmd == "parity-dump" || cmd == "eval") {
    absl::Status s = cmd == "import"   ? RunImportCommand(rest)
                     : cmd == "export" ? RunExportCommand(rest)
                     : cmd == "eval"   ? RunEvalCommand(rest)
                                       : RunParityDumpCommand(rest);
    return s.ok() ? 0 : Fail(s);
  }
  if (cmd == "data") {
    const std::vector<std::string> sub = rest.empty() ? rest : std::vector<std::string>(rest.begin() + 1, rest.end());
    if (!rest.empty() && rest[0] == "tokenize") return RunDataTokenize(sub);
    if (!rest.empty() && rest[0] == "train-tokenizer") return RunTrainTokenizer(sub);
    if (!rest.empty() && rest[0] == "encode") return RunEncode(sub);
    if (!rest.empty() && rest[0] == "inspect") return RunDataInspect(sub);
    return Usage("data: expected 'tokenize', 'train-tokenizer', 'encode' or 'inspect'");
  }
  return Usage(absl::StrCat("unknown command '", cmd, "'"));
}

}  // namespace baton
