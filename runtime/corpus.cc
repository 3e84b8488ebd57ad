// Fortune-format splitting and the tokenize loop behind `baton data tokenize`.
#include "runtime/corpus.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/file_util.h"
#include "runtime/indexed_dataset.h"

namespace baton {
namespace {

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

}  // namespace

std::vector<std::string_view> SplitDocuments(std::string_view text) {
  std::vector<std::string_view> docs;
  size_t doc_begin = 0, pos = 0;
  auto close_doc = [&](size_t end) {
    std::string_view doc = text.substr(doc_begin, end - doc_begin);
    if (!IsBlank(doc)) docs.push_back(doc);
  };
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    const size_t next = eol == std::string_view::npos ? text.size() : eol + 1;
    const size_t line_end = eol == std::string_view::npos ? text.size() : eol;
    if (text.substr(pos, line_end - pos) == "%") {
      close_doc(pos);
      doc_begin = next;
    }
    pos = next;
  }
  close_doc(text.size());
  return docs;
}

absl::StatusOr<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);
    if (ec || !fs::exists(st)) return absl::NotFoundError(absl::StrCat(input, ": no such file or directory"));
    if (!fs::is_directory(st)) {
      files.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    for (const fs::directory_entry& e : fs::directory_iterator(input, ec)) {
      const fs::path& p = e.path();
      if (e.is_symlink() || !e.is_regular_file() || p.extension() == ".dat") continue;
      found.push_back(p.string());
    }
    if (ec) return absl::PermissionDeniedError(absl::StrCat(input, ": cannot list: ", ec.message()));
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  if (files.empty()) return absl::InvalidArgumentError("tokenize: no input files");
  return files;
}

absl::StatusOr<TokenizeStats> TokenizeFiles(const std::vector<std::string>& inputs,
                                            const Tokenizer& tokenizer, const std::string& prefix) {
  BATON_ASSIGN_OR_RETURN(std::vector<std::string> files, ExpandInputs(inputs));
  BATON_ASSIGN_OR_RETURN(IndexedDatasetWriter writer,
                         IndexedDatasetWriter::Create(prefix, OptimalIndexDType(tokenizer.vocab_size())));
  TokenizeStats stats;
  std::vector<int32_t> seq;
  for (const std::string& file : files) {
    BATON_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(file));
    ++stats.files;
    for (std::string_view doc : SplitDocuments(text)) {
      std::vector<int32_t> ids = tokenizer.Encode(doc);
      seq.clear();
      seq.push_back(tokenizer.bos_id());
      seq.insert(seq.end(), ids.begin(), ids.end());
      seq.push_back(tokenizer.eos_id());
      absl::Status st = writer.AddSequence(seq);
      if (!st.ok()) return absl::Status(st.code(), absl::StrCat(file, ": ", st.message()));
      writer.EndDocument();
      ++stats.documents;
      stats.bytes += static_cast<int64_t>(doc.size());
      stats.tokens += static_cast<int64_t>(seq.size());
    }
  }
  BATON_RETURN_IF_ERROR(writer.Finish());
  return stats;
}

}  // namespace baton
