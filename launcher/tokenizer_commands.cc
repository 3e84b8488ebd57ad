// `baton data train-tokenizer` and `baton data encode` (tokenizer_commands.h).
#include "launcher/tokenizer_commands.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/check.h"
#include "launcher/mpi_session.h"
#include "runtime/bpe_tokenizer.h"
#include "runtime/bpe_trainer.h"
#include "runtime/corpus.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "baton: error: %s\n", std::string(s.message()).c_str());
  return ExitCodeFor(s);
}

int Usage(const std::string& why, const char* usage) {
  std::fprintf(stderr, "baton: error: %s\nusage: %s\n", why.c_str(), usage);
  return 2;
}

// Values after a flag up to the next "--flag".
std::vector<std::string> Values(const std::vector<std::string>& args, size_t* i) {
  std::vector<std::string> out;
  while (*i + 1 < args.size() && !absl::StartsWith(args[*i + 1], "--")) out.push_back(args[++*i]);
  return out;
}

// Writes next to `path` and renames, so a crash never leaves half a file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::NotFoundError(absl::StrCat(path, ": cannot create"));
    out << text;
    if (!out.flush()) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat(path, ": rename failed: ", ec.message()));
  return absl::OkStatus();
}

constexpr char kTrainUsage[] =
    "baton data train-tokenizer --input FILE... --vocab-size N --output tokenizer.json "
    "[--special-tokens A,B] [--min-frequency N]";
constexpr char kEncodeUsage[] = "baton data encode --tokenizer T --input FILE... [--output FILE] [--pieces]";

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromFlag(const std::string& path) {
  return LoadTokenizer(path);
}

int RunTrainTokenizer(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  std::string output;
  BpeTrainerConfig config;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--input") {
      std::vector<std::string> v = Values(args, &i);
      inputs.insert(inputs.end(), v.begin(), v.end());
    } else if (a == "--output" && i + 1 < args.size()) {
      output = args[++i];
    } else if (a == "--vocab-size" && i + 1 < args.size()) {
      if (!absl::SimpleAtoi(args[++i], &config.vocab_size) || config.vocab_size <= 0) {
        return Usage(absl::StrCat("--vocab-size: '", args[i], "' is not a positive integer"), kTrainUsage);
      }
    } else if (a == "--min-frequency" && i + 1 < args.size()) {
      if (!absl::SimpleAtoi(args[++i], &config.min_frequency) || config.min_frequency < 0) {
        return Usage(absl::StrCat("--min-frequency: '", args[i], "' is not a non-negative integer"), kTrainUsage);
      }
    } else if (a == "--special-tokens" && i + 1 < args.size()) {
      config.special_tokens = absl::StrSplit(args[++i], ',', absl::SkipEmpty());
    } else {
      return Usage(absl::StrCat("unknown flag '", a, "' for 'data train-tokenizer'"), kTrainUsage);
    }
  }
  if (inputs.empty()) return Usage("data train-tokenizer: --input FILE... is required", kTrainUsage);
  if (output.empty()) return Usage("data train-tokenizer: --output tokenizer.json is required", kTrainUsage);
  if (config.vocab_size == 0) return Usage("data train-tokenizer: --vocab-size N is required", kTrainUsage);

  absl::StatusOr<std::vector<std::string>> files = ExpandInputs(inputs);
  if (!files.ok()) return Fail(files.status());
  BpeTrainer trainer(config);
  int64_t documents = 0, bytes = 0;
  for (const std::string& f : *files) {
    absl::StatusOr<std::string> text = ReadWholeFile(f);
    if (!text.ok()) return Fail(text.status());
    for (std::string_view doc : SplitDocuments(*text)) {
      trainer.AddDocument(doc);
      ++documents;
      bytes += static_cast<int64_t>(doc.size());
    }
  }
  absl::StatusOr<BpeModel> model = trainer.Train();
  if (!model.ok()) return Fail(model.status());
  const std::string json = BpeModelToJson(*model);
  // What we write must load back: a bug here would otherwise surface later.
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> check = BpeTokenizer::FromJson(json);
  if (!check.ok()) return Fail(absl::InternalError(absl::StrCat("trained tokenizer does not load: ", check.status().message())));
  if (absl::Status s = WriteFileAtomically(output, json); !s.ok()) return Fail(s);
  std::printf("trained tokenizer on %zu files: %lld documents, %lld bytes, %zu distinct words -> "
              "vocab %zu (%zu merges, %zu special) in %s\n",
              files->size(), static_cast<long long>(documents), static_cast<long long>(bytes),
              trainer.word_counts().size(), model->vocab.size(), model->merges.size(),
              model->special_tokens.size(), output.c_str());
  return 0;
}

int RunEncode(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  std::string output, tokenizer_path;
  bool pieces = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--input") {
      std::vector<std::string> v = Values(args, &i);
      inputs.insert(inputs.end(), v.begin(), v.end());
    } else if (a == "--output" && i + 1 < args.size()) {
      output = args[++i];
    } else if (a == "--tokenizer" && i + 1 < args.size()) {
      tokenizer_path = args[++i];
    } else if (a == "--pieces") {
      pieces = true;
    } else {
      return Usage(absl::StrCat("unknown flag '", a, "' for 'data encode'"), kEncodeUsage);
    }
  }
  if (inputs.empty()) return Usage("data encode: --input FILE... is required", kEncodeUsage);
  if (tokenizer_path.empty()) return Usage("data encode: --tokenizer T is required", kEncodeUsage);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = TokenizerFromFlag(tokenizer_path);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  absl::StatusOr<std::vector<std::string>> files = ExpandInputs(inputs);
  if (!files.ok()) return Fail(files.status());

  std::string out;
  for (const std::string& f : *files) {
    absl::StatusOr<std::string> text = ReadWholeFile(f);
    if (!text.ok()) return Fail(text.status());
    for (std::string_view doc : SplitDocuments(*text)) {
      if (pieces) {  // pre-tokens in hex, for checking the regex alone
        auto* bpe = dynamic_cast<const BpeTokenizer*>(tokenizer->get());
        if (bpe == nullptr) return Usage("data encode: --pieces needs a tokenizer.json", kEncodeUsage);
        const std::vector<std::string> words = bpe->PreTokenize(doc);
        for (size_t k = 0; k < words.size(); ++k) {
          if (k) out += ' ';
          for (char c : words[k]) absl::StrAppend(&out, absl::Hex(static_cast<uint8_t>(c), absl::kZeroPad2));
        }
        out += '\n';
        continue;
      }
      const std::vector<int32_t> ids = (*tokenizer)->Encode(doc);
      for (size_t k = 0; k < ids.size(); ++k) absl::StrAppend(&out, k ? " " : "", ids[k]);
      out += '\n';
    }
  }
  if (output.empty()) {
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  if (absl::Status s = WriteFileAtomically(output, out); !s.ok()) return Fail(s);
  return 0;
}

}  // namespace baton
