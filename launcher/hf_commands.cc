// `baton import`, `baton export` and `baton parity-dump` (see hf_commands.h):
// flag parsing, checkpoint <-> model plumbing and the summary lines. The
// format work lives in checkpoints/hf_model.cc.
#include "launcher/hf_commands.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "checkpoints/checkpoint.h"
#include "checkpoints/hf_model.h"
#include "checkpoints/safetensors.h"
#include "kernels/check.h"
#include "launcher/config.h"
#include "nlohmann/json.hpp"
#include "runtime/bpe_tokenizer.h"
#include "runtime/bpe_trainer.h"
#include "runtime/model.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

// "--flag VALUE" pairs; every flag of `allowed` at most once.
absl::StatusOr<std::map<std::string, std::string>> ParseFlags(const std::vector<std::string>& args,
                                                              const std::set<std::string>& allowed,
                                                              const char* command, const char* usage) {
  std::map<std::string, std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!allowed.count(a)) return Bad("unknown argument '", a, "' for '", command, "' (usage: ", usage, ")");
    if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) {
      return Bad(command, ": ", a, " needs a value (usage: ", usage, ")");
    }
    if (!flags.emplace(a, args[i + 1]).second) return Bad(command, ": ", a, " given twice");
    ++i;
  }
  return flags;
}

absl::Status Require(const std::map<std::string, std::string>& flags, const std::vector<const char*>& names,
                     const char* command, const char* usage) {
  for (const char* n : names) {
    if (!flags.count(n)) return Bad(command, ": ", n, " is required (usage: ", usage, ")");
  }
  return absl::OkStatus();
}

// Writes `text` to `path` through a temporary name, so a failed export never
// leaves a half-written file under the final name.
absl::Status WriteTextAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return absl::InternalError(absl::StrCat("writing ", tmp, " failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("renaming ", tmp, " to ", path, " failed"));
  }
  return absl::OkStatus();
}

// tokenizer.json + tokenizer_config.json beside the weights, so that
// AutoTokenizer.from_pretrained(DIR) encodes text the way the model was
// trained: "byte" becomes a merge-free byte-level BPE (id b = byte b,
// BOS 256, EOS 257); a tokenizer.json path is checked, then copied.
absl::Status WriteTokenizerFiles(const std::string& dir, std::string json, int64_t vocab_size,
                                 int64_t max_length) {
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tok, BpeTokenizer::FromJson(json));
  if (tok->vocab_size() > vocab_size) {
    return Bad("export: the tokenizer has ", tok->vocab_size(), " ids but model.vocab_size=", vocab_size);
  }
  nlohmann::json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                           {"model_max_length", max_length},
                           {"clean_up_tokenization_spaces", false}};
  if (tok->bos_id() >= 0) config["bos_token"] = tok->TokenString(tok->bos_id());
  if (tok->eos_id() >= 0) config["eos_token"] = tok->TokenString(tok->eos_id());
  BATON_RETURN_IF_ERROR(WriteTextAtomically(dir + "/tokenizer.json", json));
  return WriteTextAtomically(dir + "/tokenizer_config.json", config.dump(2) + "\n");
}

// The job config stored in a checkpoint, and an f32 model holding its params.
struct LoadedCheckpoint {
  CheckpointData data;
  JobConfig job;
  Model model;
};

absl::StatusOr<LoadedCheckpoint> LoadModelCheckpoint(const std::string& path) {
  BATON_ASSIGN_OR_RETURN(CheckpointData data, ReadCheckpoint(path));
  auto config = data.attrs.find("config");
  if (config == data.attrs.end()) return Bad(path, ": no \"config\" attribute (not a baton checkpoint?)");
  BATON_ASSIGN_OR_RETURN(JobConfig job, ParseJobConfig(config->second, path + " attrs[config]", {}));
  BATON_ASSIGN_OR_RETURN(Model model, Model::Create(job.model, DType::kF32));
  std::set<std::string> names;
  for (Param& p : model.params()) {
    BATON_RETURN_IF_ERROR(CopyInto(data, "params/" + p.name, p.value));
    names.insert("params/" + p.name);
  }
  for (const CheckpointTensor& t : data.tensors) {
    if (t.name.rfind("params/", 0) == 0 && !names.count(t.name)) {
      return Bad(path, ": tensor ", t.name, " is not a parameter of the model its config describes");
    }
  }
  return LoadedCheckpoint{std::move(data), std::move(job), std::move(model)};
}

constexpr char kImportUsage[] = "baton import --hf DIR --out CKPT";
constexpr char kExportUsage[] =
    "baton export --checkpoint CKPT --format hf --out DIR [--dtype f32|bf16] [--max-shard-bytes N]"
    " [--tokenizer tokenizer.json]";
constexpr char kParityUsage[] = "baton parity-dump --checkpoint CKPT --tokens FILE --out FILE";

}  // namespace

absl::Status RunImportCommand(const std::vector<std::string>& args) {
  BATON_ASSIGN_OR_RETURN(auto flags, ParseFlags(args, {"--hf", "--out"}, "import", kImportUsage));
  BATON_RETURN_IF_ERROR(Require(flags, {"--hf", "--out"}, "import", kImportUsage));
  const std::string dir = flags["--hf"], out = flags["--out"];
  const std::string config_path = dir + "/config.json";
  BATON_ASSIGN_OR_RETURN(std::string config_text, ReadWholeFile(config_path));
  BATON_ASSIGN_OR_RETURN(HfConfig hf, ParseHfConfig(config_text, config_path));
  BATON_ASSIGN_OR_RETURN(Model model, Model::Create(hf.model, DType::kF32));
  BATON_RETURN_IF_ERROR(ReadHfWeights(dir, model));

  JobConfig job;
  job.model = hf.model;
  BATON_RETURN_IF_ERROR(ValidateJobConfig(job));
  job.source_text = JobConfigToToml(job);
  CheckpointData data;
  data.step = 0;
  for (const Param& p : model.params()) data.tensors.push_back({"params/" + p.name, p.value});
  data.attrs["config"] = job.source_text;
  data.attrs["hf_config"] = config_text;
  data.attrs["imported_from"] = dir;
  // Keep the model's tokenizer with it, so export can hand it back.
  if (absl::StatusOr<std::string> tok = ReadWholeFile(dir + "/tokenizer.json"); tok.ok()) {
    data.attrs["tokenizer_json"] = *tok;
  }
  BATON_RETURN_IF_ERROR(WriteCheckpoint(out, data));
  std::printf("imported %s (%s, %d layers, %lld parameters) -> %s\n", dir.c_str(), hf.architecture.c_str(),
              hf.model.layers, static_cast<long long>(model.NumParameters()), out.c_str());
  return absl::OkStatus();
}

absl::Status RunExportCommand(const std::vector<std::string>& args) {
  BATON_ASSIGN_OR_RETURN(auto flags, ParseFlags(args, {"--checkpoint", "--format", "--out", "--dtype",
                                                       "--max-shard-bytes", "--tokenizer"},
                                                "export", kExportUsage));
  BATON_RETURN_IF_ERROR(Require(flags, {"--checkpoint", "--format", "--out"}, "export", kExportUsage));
  if (flags["--format"] != "hf") return Bad("export: --format ", flags["--format"], " is not supported (expected hf)");
  HfExportOptions options;
  if (flags.count("--dtype")) {
    const std::string& d = flags["--dtype"];
    if (d != "f32" && d != "bf16") return Bad("export: --dtype ", d, " is not supported (expected f32 or bf16)");
    options.dtype = d == "bf16" ? "BF16" : "F32";
  }
  if (flags.count("--max-shard-bytes")) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(flags["--max-shard-bytes"], &n) || n == 0) {
      return Bad("export: --max-shard-bytes ", flags["--max-shard-bytes"], " is not a positive integer");
    }
    options.max_shard_bytes = n;
  }
  const std::string ckpt = flags["--checkpoint"], out = flags["--out"];
  BATON_ASSIGN_OR_RETURN(LoadedCheckpoint loaded, LoadModelCheckpoint(ckpt));
  options.max_position_embeddings = loaded.job.train.seq_len;
  // An imported model keeps its own context length and special tokens.
  if (auto it = loaded.data.attrs.find("hf_config"); it != loaded.data.attrs.end()) {
    BATON_ASSIGN_OR_RETURN(HfConfig hf, ParseHfConfig(it->second, ckpt + " attrs[hf_config]"));
    if (hf.max_position_embeddings > 0) options.max_position_embeddings = hf.max_position_embeddings;
    if (hf.bos_token_id) options.bos_token_id = *hf.bos_token_id;
    if (hf.eos_token_id) options.eos_token_id = *hf.eos_token_id;
  }
  BATON_RETURN_IF_ERROR(WriteHfModel(out, loaded.model, options));
  // The tokenizer: --tokenizer, else the one imported with the model, else data.tokenizer.
  std::string tokenizer_json;
  const std::string spec = flags.count("--tokenizer") ? flags["--tokenizer"] : loaded.job.data.tokenizer;
  if (auto it = loaded.data.attrs.find("tokenizer_json"); it != loaded.data.attrs.end() && !flags.count("--tokenizer")) {
    tokenizer_json = it->second;
  } else if (spec != "byte") {
    BATON_ASSIGN_OR_RETURN(tokenizer_json, ReadWholeFile(spec));
  } else if (loaded.job.model.vocab_size == ByteTokenizer::kVocabSize) {
    tokenizer_json = BpeModelToJson(ByteTokenizerModel());
  }
  if (tokenizer_json.empty()) {
    std::printf("export: no tokenizer files written (the checkpoint names none; pass --tokenizer tokenizer.json)\n");
  } else {
    BATON_RETURN_IF_ERROR(WriteTokenizerFiles(out, tokenizer_json, loaded.job.model.vocab_size,
                                              options.max_position_embeddings));
  }
  std::printf("exported %s (step %lld, %s, %s) -> %s\n", ckpt.c_str(), static_cast<long long>(loaded.data.step),
              HfArchitectureFor(loaded.job.model), options.dtype.c_str(), out.c_str());
  return absl::OkStatus();
}

absl::Status RunParityDumpCommand(const std::vector<std::string>& args) {
  BATON_ASSIGN_OR_RETURN(auto flags, ParseFlags(args, {"--checkpoint", "--tokens", "--out"}, "parity-dump",
                                                kParityUsage));
  BATON_RETURN_IF_ERROR(Require(flags, {"--checkpoint", "--tokens", "--out"}, "parity-dump", kParityUsage));
  BATON_ASSIGN_OR_RETURN(LoadedCheckpoint loaded, LoadModelCheckpoint(flags["--checkpoint"]));
  Model& model = loaded.model;
  const int64_t vocab = model.config().vocab_size;

  // ---- tokens (B, T) and targets: input_ids shifted left, last position ignored (HF labels=input_ids)
  const std::string tokens_path = flags["--tokens"];
  BATON_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(tokens_path));
  const SafetensorsEntry* e = file.Find("input_ids");
  if (e == nullptr) return absl::NotFoundError(absl::StrCat(tokens_path, ": no tensor input_ids"));
  if ((e->dtype != "I64" && e->dtype != "I32") || e->shape.size() != 2 || e->shape[1] < 2 || e->shape[0] < 1) {
    return Bad(tokens_path, ": input_ids must be I64 or I32 of shape (B, T) with T >= 2");
  }
  BATON_ASSIGN_OR_RETURN(Tensor tokens, file.ReadAsF32("input_ids"));  // i32 (B, T)
  const int64_t b = tokens.dim(0), t = tokens.dim(1);
  Tensor targets = Tensor::Empty({b, t}, DType::kI32);  // (B, T)
  const int32_t* tok = tokens.data<int32_t>();
  int32_t* tgt = targets.data<int32_t>();
  for (int64_t i = 0; i < b * t; ++i) {
    if (tok[i] < 0 || tok[i] >= vocab) {
      return Bad(tokens_path, ": input_ids[", i / t, ", ", i % t, "] = ", tok[i], " is outside [0, ", vocab, ")");
    }
    tgt[i] = (i % t == t - 1) ? -1 : tok[i + 1];
  }
  const int64_t count = b * (t - 1);

  // ---- loss, gradients, logits
  model.ZeroGrad();
  const double loss = model.ForwardBackward(tokens, targets, 1.0 / static_cast<double>(count), RecomputeConfig{}) /
                      static_cast<double>(count);
  Tensor logits = model.Logits(tokens);  // (B·T, V)

  Tensor loss_t = Tensor::Empty({1}, DType::kF64);
  loss_t.data<double>()[0] = loss;
  Tensor count_t = Tensor::Empty({1}, DType::kI32);
  count_t.data<int32_t>()[0] = static_cast<int32_t>(count);
  std::vector<SafetensorsTensor> out = {{"logits", logits}, {"loss", loss_t}, {"count", count_t}};
  for (const Param& p : model.params()) out.push_back({"grad." + *BatonToHfName(p.name), p.grad});
  BATON_RETURN_IF_ERROR(WriteSafetensors(flags["--out"], out, {}));
  std::printf("parity-dump: B=%lld T=%lld loss %.6f, %zu gradients -> %s\n", static_cast<long long>(b),
              static_cast<long long>(t), loss, model.params().size(), flags["--out"].c_str());
  return absl::OkStatus();
}

}  // namespace baton
