// `baton data inspect` (data_inspect.h): reads the index for the counts,
// scans .bin once for the id range, and decodes the asked documents and
// samples through the Tokenizer interface and the trainer's Sampler.
#include "launcher/data_inspect.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/check.h"
#include "launcher/mpi_session.h"
#include "launcher/tokenizer_commands.h"
#include "runtime/indexed_dataset.h"
#include "runtime/sampler.h"
#include "runtime/tensor.h"

namespace baton {
namespace {

// The id range of the whole .bin, and where it first leaves [0, vocab).
struct IdScan {
  int64_t min_id = std::numeric_limits<int64_t>::max();
  int64_t max_id = std::numeric_limits<int64_t>::min();
  int64_t outside = 0;         // tokens with id < 0 or id >= vocab
  int64_t first_bad_doc = -1;  // document of the first such token
  int64_t first_bad_id = 0;
};

IdScan ScanIds(const IndexedDataset& ds, int64_t vocab) {
  IdScan s;
  constexpr int64_t kChunk = int64_t{1} << 16;
  std::vector<int32_t> buf(kChunk);
  int64_t doc = 0;
  for (int64_t seq = 0; seq < ds.num_sequences(); ++seq) {
    while (doc < ds.num_documents() && ds.document_index(doc + 1) <= seq) ++doc;
    const int64_t len = ds.sequence_length(seq);
    for (int64_t off = 0; off < len; off += kChunk) {
      const int64_t n = std::min(kChunk, len - off);
      ds.Get(seq, off, n, buf.data());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t id = buf[i];
        s.min_id = std::min(s.min_id, id);
        s.max_id = std::max(s.max_id, id);
        if (id < 0 || id >= vocab) {
          if (s.outside++ == 0) {
            s.first_bad_doc = doc;
            s.first_bad_id = id;
          }
        }
      }
    }
  }
  return s;
}

// Text a terminal shows as it is: newlines and tabs stay, other control
// bytes become \xNN (UTF-8 above 0x7f is left alone).
void AppendVisible(std::string_view text, std::string* out) {
  for (unsigned char c : text) {
    if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) {
      out->push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
}

// Decodes ids in runs between the markers a packed sample needs to be read:
// <bos>, <eos>, and <id N?> for an id the tokenizer does not know.
std::string Render(const Tokenizer& tok, const std::vector<int32_t>& ids, int64_t max_tokens) {
  const size_t n = max_tokens > 0 ? std::min(ids.size(), static_cast<size_t>(max_tokens)) : ids.size();
  std::string out;
  size_t run = 0;
  auto flush = [&](size_t end) {
    if (end > run) {
      absl::StatusOr<std::string> text = tok.Decode(absl::MakeConstSpan(ids.data() + run, end - run));
      BATON_CHECK(text.ok());  // every id of the run was checked to be in range
      AppendVisible(*text, &out);
    }
  };
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    const char* mark = id == tok.bos_id() ? "<bos>" : id == tok.eos_id() ? "<eos>" : nullptr;
    const bool unknown = id < 0 || id >= tok.vocab_size();
    if (mark == nullptr && !unknown) continue;
    flush(i);
    run = i + 1;
    out += mark != nullptr ? std::string(mark) : absl::StrCat("<id ", id, "?>");
  }
  flush(n);
  if (n < ids.size()) absl::StrAppend(&out, "\n... (", ids.size() - n, " more tokens; --max-tokens 0 shows all)");
  return out;
}

void AppendIds(const std::vector<int32_t>& ids, int64_t max_tokens, std::string* out) {
  const size_t n = max_tokens > 0 ? std::min(ids.size(), static_cast<size_t>(max_tokens)) : ids.size();
  *out += "  ids:";
  for (size_t i = 0; i < n; ++i) absl::StrAppend(out, " ", ids[i]);
  if (n < ids.size()) *out += " ...";
  *out += "\n";
}

std::vector<int32_t> DocumentTokens(const IndexedDataset& ds, int64_t doc) {
  std::vector<int32_t> ids;
  for (int64_t s = ds.document_index(doc); s < ds.document_index(doc + 1); ++s) {
    std::vector<int32_t> part = ds.Get(s);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

std::string Summary(const IndexedDataset& ds, const std::string& prefix) {
  std::error_code ec;
  const auto bin_bytes = std::filesystem::file_size(prefix + ".bin", ec);
  int64_t empty = 0, min_len = std::numeric_limits<int64_t>::max(), max_len = 0;
  for (int64_t d = 0; d < ds.num_documents(); ++d) {
    int64_t len = 0;
    for (int64_t s = ds.document_index(d); s < ds.document_index(d + 1); ++s) len += ds.sequence_length(s);
    empty += len == 0;
    min_len = std::min(min_len, len);
    max_len = std::max(max_len, len);
  }
  if (ds.num_documents() == 0) min_len = 0;
  const double mean = ds.num_documents() > 0 ? static_cast<double>(ds.num_tokens()) / ds.num_documents() : 0;
  std::string out = absl::StrCat("dataset ", prefix, ".bin/.idx\n");
  absl::StrAppendFormat(&out, "  dtype       %s (Megatron code %d, %d bytes per token), .bin %d bytes\n",
                        IndexDTypeName(ds.dtype()), static_cast<int>(ds.dtype()),
                        static_cast<int>(IndexDTypeSize(ds.dtype())), ec ? -1 : static_cast<int64_t>(bin_bytes));
  absl::StrAppendFormat(&out, "  documents   %d (%d empty), %d sequences\n", ds.num_documents(), empty,
                        ds.num_sequences());
  absl::StrAppendFormat(&out, "  tokens      %d (per document: min %d, mean %.1f, max %d)\n", ds.num_tokens(),
                        min_len, mean, max_len);
  return out;
}

// The id-range line, and the error line when ids leave the vocabulary.
void CheckIds(const IndexedDataset& ds, const Tokenizer& tok, const DataInspectOptions& o,
              DataInspectReport* r) {
  const int64_t vocab = o.vocab_size > 0 ? o.vocab_size : tok.vocab_size();
  const std::string vocab_name =
      o.vocab_size > 0 ? "--vocab-size" : absl::StrCat("the ", o.tokenizer, " tokenizer's vocabulary");
  const IdScan s = ScanIds(ds, vocab);
  if (ds.num_tokens() == 0) {
    r->text += "  token ids   none (no tokens)\n";
    return;
  }
  absl::StrAppendFormat(&r->text, "  token ids   %d .. %d against vocabulary %d (%s): ", s.min_id, s.max_id, vocab,
                        vocab_name);
  if (s.outside == 0) {
    r->text += "all fit\n";
  } else {
    absl::StrAppendFormat(&r->text, "%d tokens (%.4g %%) do NOT fit\n", s.outside,
                          100.0 * static_cast<double>(s.outside) / static_cast<double>(ds.num_tokens()));
    r->ids_fit = false;
    r->ids_error = absl::StrFormat(
        "%s: %d token ids outside [0, %d) (%s), ids %d .. %d, the first (%d) in document %d: "
        "set model.vocab_size to at least %d or re-tokenize with the model's tokenizer",
        o.prefix, s.outside, vocab, vocab_name, s.min_id, s.max_id, s.first_bad_id, s.first_bad_doc, s.max_id + 1);
  }
  if (o.vocab_size > 0 && s.max_id >= tok.vocab_size()) {
    absl::StrAppendFormat(&r->text,
                          "  note        ids above %d are not in the %s tokenizer (vocabulary %d): "
                          "they decode as <id N?>; pass the dataset's --tokenizer\n",
                          tok.vocab_size() - 1, o.tokenizer, tok.vocab_size());
  }
}

absl::Status AppendSamples(const IndexedDataset& ds, const Tokenizer& tok, const DataInspectOptions& o,
                           std::string* out) {
  if (o.seq_len < 1) return absl::InvalidArgumentError("--sample needs --seq-len T (train.seq_len)");
  if (o.seed < 0) return absl::InvalidArgumentError(absl::StrCat("--seed: ", o.seed, " must be >= 0"));
  BATON_ASSIGN_OR_RETURN(Sampler sampler,
                         Sampler::Create(ds, o.seq_len, static_cast<uint64_t>(o.seed), o.val_fraction));
  absl::StrAppendFormat(out,
                        "\nsamples (seq_len %d, seed %d, val_fraction %g): %d train (%d documents, %d tokens), "
                        "%d val (%d documents)\n",
                        o.seq_len, o.seed, o.val_fraction, sampler.num_train_samples(),
                        sampler.num_train_documents(), sampler.num_train_tokens(), sampler.num_val_samples(),
                        sampler.num_val_documents());
  const int64_t last = *std::max_element(o.samples.begin(), o.samples.end());
  // The run's order: positions 0..last of the epoch stream (epochs roll over).
  const std::vector<int64_t> order = sampler.NextSampleIds(last + 1);
  for (int64_t n : o.samples) {
    const int64_t id = order[n];
    Tensor tokens, targets;
    sampler.FillTrain({id}, tokens, targets);
    std::vector<int32_t> ids(tokens.data<int32_t>(), tokens.data<int32_t>() + o.seq_len);
    ids.push_back(targets.data<int32_t>()[o.seq_len - 1]);  // the last target completes the window
    absl::StrAppendFormat(out, "\nsample %d (epoch %d, train sample id %d; %d tokens + the last target):\n", n,
                          n / sampler.num_train_samples(), id, o.seq_len);
    if (o.ids) AppendIds(ids, o.max_tokens, out);
    absl::StrAppend(out, Render(tok, ids, o.max_tokens), "\n");
  }
  return absl::OkStatus();
}

constexpr char kUsage[] =
    "baton data inspect PREFIX [--vocab-size V] [--tokenizer tokenizer.json] [--doc N...] "
    "[--sample N... --seq-len T [--seed S] [--val-fraction F]] [--max-tokens K] [--ids]";

int Usage(const std::string& why) {
  std::fprintf(stderr, "baton: error: %s\nusage: %s\n", why.c_str(), kUsage);
  return 2;
}

// Integers after a flag up to the next "--flag"; false when one does not parse.
bool Ints(const std::vector<std::string>& args, size_t* i, std::vector<int64_t>* out) {
  const size_t flag = *i;
  while (*i + 1 < args.size() && !absl::StartsWith(args[*i + 1], "--")) {
    int64_t v;
    if (!absl::SimpleAtoi(args[++*i], &v)) return false;
    out->push_back(v);
  }
  return *i > flag;
}

}  // namespace

absl::StatusOr<DataInspectReport> InspectDataset(const DataInspectOptions& o) {
  BATON_ASSIGN_OR_RETURN(IndexedDataset ds, IndexedDataset::Open(o.prefix));
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, TokenizerFromFlag(o.tokenizer));
  for (int64_t d : o.docs) {
    if (d < 0 || d >= ds.num_documents()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--doc ", d, ": ", o.prefix, " has documents 0 .. ", ds.num_documents() - 1));
    }
  }
  for (int64_t n : o.samples) {
    if (n < 0) return absl::InvalidArgumentError(absl::StrCat("--sample ", n, ": must be >= 0"));
  }
  if (o.vocab_size < 0) return absl::InvalidArgumentError(absl::StrCat("--vocab-size: ", o.vocab_size, " must be > 0"));
  DataInspectReport r;
  r.text = Summary(ds, o.prefix);
  CheckIds(ds, *tok, o, &r);
  for (int64_t d : o.docs) {
    const std::vector<int32_t> ids = DocumentTokens(ds, d);
    absl::StrAppendFormat(&r.text, "\ndocument %d (sequences %d .. %d, %d tokens):\n", d, ds.document_index(d),
                          ds.document_index(d + 1) - 1, ids.size());
    if (o.ids) AppendIds(ids, o.max_tokens, &r.text);
    absl::StrAppend(&r.text, Render(*tok, ids, o.max_tokens), "\n");
  }
  if (!o.samples.empty()) BATON_RETURN_IF_ERROR(AppendSamples(ds, *tok, o, &r.text));
  return r;
}

int RunDataInspect(const std::vector<std::string>& args) {
  DataInspectOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (!absl::StartsWith(a, "--")) {
      if (!o.prefix.empty()) return Usage(absl::StrCat("one PREFIX expected, got '", o.prefix, "' and '", a, "'"));
      o.prefix = a;
    } else if (a == "--doc") {
      if (!Ints(args, &i, &o.docs)) return Usage("--doc takes document numbers");
    } else if (a == "--sample") {
      if (!Ints(args, &i, &o.samples)) return Usage("--sample takes sample numbers");
    } else if (a == "--tokenizer" && has_value) {
      o.tokenizer = args[++i];
    } else if (a == "--vocab-size" && has_value) {
      if (!absl::SimpleAtoi(args[++i], &o.vocab_size) || o.vocab_size <= 0) {
        return Usage(absl::StrCat("--vocab-size: '", args[i], "' is not a positive integer"));
      }
    } else if (a == "--seq-len" && has_value) {
      if (!absl::SimpleAtoi(args[++i], &o.seq_len) || o.seq_len <= 0) {
        return Usage(absl::StrCat("--seq-len: '", args[i], "' is not a positive integer"));
      }
    } else if (a == "--seed" && has_value) {
      if (!absl::SimpleAtoi(args[++i], &o.seed) || o.seed < 0) {
        return Usage(absl::StrCat("--seed: '", args[i], "' is not a non-negative integer"));
      }
    } else if (a == "--val-fraction" && has_value) {
      if (!absl::SimpleAtod(args[++i], &o.val_fraction) || o.val_fraction < 0 || o.val_fraction >= 1) {
        return Usage(absl::StrCat("--val-fraction: '", args[i], "' is not in [0, 1)"));
      }
    } else if (a == "--max-tokens" && has_value) {
      if (!absl::SimpleAtoi(args[++i], &o.max_tokens) || o.max_tokens < 0) {
        return Usage(absl::StrCat("--max-tokens: '", args[i], "' is not a non-negative integer"));
      }
    } else if (a == "--ids") {
      o.ids = true;
    } else {
      return Usage(absl::StrCat("unknown flag '", a, "' for 'data inspect'"));
    }
  }
  if (o.prefix.empty()) return Usage("data inspect: PREFIX is required");
  if (!o.samples.empty() && o.seq_len == 0) return Usage("--sample needs --seq-len T (train.seq_len)");
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  if (!r.ok()) {
    std::fprintf(stderr, "baton: error: %s\n", std::string(r.status().message()).c_str());
    return ExitCodeFor(r.status());
  }
  std::fwrite(r->text.data(), 1, r->text.size(), stdout);
  std::fflush(stdout);
  if (!r->ids_fit) {
    std::fprintf(stderr, "baton: error: %s\n", r->ids_error.c_str());
    return 2;
  }
  return 0;
}

}  // namespace baton
