// Prompt and result lines of `baton infer` (see infer_io.h).
#include "launcher/infer_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/rng.h"

namespace baton {

using nlohmann::json;

const char* InferFormatName(InferFormat f) { return f == InferFormat::kOpenAi ? "openai" : "baton"; }

std::string IdKey(const json& id) { return id.dump(); }

namespace {

// Strings from model output may hold a cut UTF-8 sequence: replace, never throw.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return std::string(s);
}

// Field readers: an error string naming the field, or "" and the value set.
std::string ReadInt(const json& o, const char* key, int64_t min, std::optional<int64_t>& out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return "";
  if (!it->is_number_integer()) return absl::StrCat("'", key, "' must be an integer, got ", Dump(*it));
  const int64_t v = it->get<int64_t>();
  if (v < min) return absl::StrCat("'", key, "'=", v, " must be >= ", min);
  out = v;
  return "";
}

std::string ReadNumber(const json& o, const char* key, std::optional<double>& out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return "";
  if (!it->is_number()) return absl::StrCat("'", key, "' must be a number, got ", Dump(*it));
  out = it->get<double>();
  return "";
}

std::string ReadStop(const json& o, std::vector<std::string>& out) {
  auto it = o.find("stop");
  if (it == o.end() || it->is_null()) return "";
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
    return "";
  }
  if (!it->is_array()) return absl::StrCat("'stop' must be a string or an array of strings, got ", Dump(*it));
  for (const json& s : *it) {
    if (!s.is_string()) return absl::StrCat("'stop' must hold strings, got ", Dump(s));
    out.push_back(s.get<std::string>());
  }
  return "";
}

// prompt: a string, or an array of token ids.
std::string ReadPrompt(const json& o, const char* key, InferRequest& r) {
  auto it = o.find(key);
  if (it == o.end()) return absl::StrCat("no '", key, "'");
  if (it->is_string()) {
    r.prompt = it->get<std::string>();
    return "";
  }
  if (it->is_array()) {
    std::vector<int32_t> ids;
    for (const json& t : *it) {
      if (!t.is_number_integer()) {
        return absl::StrCat("'", key, "' must be a string or an array of token ids (one prompt per line), got an element ",
                            Dump(t));
      }
      ids.push_back(t.get<int32_t>());
    }
    r.tokens = std::move(ids);
    return "";
  }
  return absl::StrCat("'", key, "' must be a string, got ", Dump(*it));
}

// The sampling fields shared by both formats, from object `o`.
std::string ReadSampling(const json& o, InferRequest& r, const char* max_key) {
  std::string e;
  if (!(e = ReadInt(o, max_key, 1, r.max_new_tokens)).empty()) return e;
  if (!(e = ReadNumber(o, "temperature", r.temperature)).empty()) return e;
  if (!(e = ReadNumber(o, "top_p", r.top_p)).empty()) return e;
  std::optional<int64_t> top_k, seed;
  if (!(e = ReadInt(o, "top_k", -1, top_k)).empty()) return e;  // -1: vLLM's "off"
  if (top_k) r.top_k = static_cast<int>(*top_k < 0 ? 0 : *top_k);
  if (!(e = ReadInt(o, "seed", 0, seed)).empty()) return e;
  if (seed) r.seed = static_cast<uint64_t>(*seed);
  return ReadStop(o, r.stop);
}

std::string ParseBaton(const json& j, InferRequest& r) {
  static const std::set<std::string> kKnown = {"id", "prompt", "tokens", "max_new_tokens", "temperature",
                                               "top_k", "top_p", "seed", "stop"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!kKnown.count(it.key())) return absl::StrCat("unknown field '", it.key(), "'");
  }
  if (j.contains("prompt") == j.contains("tokens")) return "give exactly one of 'prompt' (text) and 'tokens' (ids)";
  std::string e = ReadPrompt(j, j.contains("prompt") ? "prompt" : "tokens", r);
  if (!e.empty()) return e;
  if (j.contains("tokens") && !r.tokens) return "'tokens' must be an array of token ids";
  return ReadSampling(j, r, "max_new_tokens");
}

std::string ParseOpenAi(const json& j, InferRequest& r) {
  if (!j.contains("method") || j["method"] != "POST") return "'method' must be \"POST\"";
  if (!j.contains("url") || !j["url"].is_string()) return "no 'url'";
  const std::string url = j["url"].get<std::string>();
  if (url == "/v1/chat/completions") {
    return "url /v1/chat/completions is not supported (no chat templates yet): use /v1/completions with a prompt";
  }
  if (url != "/v1/completions") return absl::StrCat("url ", url, " is not supported (only /v1/completions)");
  if (!j.contains("body") || !j["body"].is_object()) return "'body' must be an object";
  const json& b = j["body"];
  if (b.contains("model") && b["model"].is_string()) r.model = b["model"].get<std::string>();
  for (const char* key : {"logprobs", "echo", "best_of", "suffix", "logit_bias"}) {
    if (b.contains(key) && !b[key].is_null() && b[key] != false) return absl::StrCat("body.", key, " is not supported");
  }
  if (b.contains("n") && b["n"] != 1) return "body.n must be 1 (one completion per line)";
  if (b.contains("stream") && b["stream"] == true) return "body.stream is not supported in a batch";
  std::string e = ReadPrompt(b, "prompt", r);
  if (!e.empty()) return absl::StrCat("body: ", e);
  e = ReadSampling(b, r, "max_tokens");
  return e.empty() ? "" : absl::StrCat("body: ", e);
}

}  // namespace

InferFormat DetectInferFormat(std::string_view first_line) {
  const json j = json::parse(first_line, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("custom_id") ? InferFormat::kOpenAi : InferFormat::kBaton;
}

ParsedLine ParseInferLine(std::string_view text, int64_t line, InferFormat format) {
  ParsedLine out;
  auto fail = [&](json id, std::string message) {
    out.error = InferLineError{line, std::move(id), std::move(message)};
    return out;
  };
  const json j = json::parse(Trim(text), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(nullptr, "malformed JSON");
  if (!j.is_object()) return fail(nullptr, "a line must be a JSON object");
  const char* id_key = format == InferFormat::kOpenAi ? "custom_id" : "id";
  auto id = j.find(id_key);
  if (id == j.end() || id->is_null()) return fail(nullptr, absl::StrCat("no '", id_key, "'"));
  const bool id_ok = format == InferFormat::kOpenAi ? id->is_string() : (id->is_string() || id->is_number_integer());
  if (!id_ok) {
    return fail(nullptr, absl::StrCat("'", id_key, "' must be a string", format == InferFormat::kOpenAi ? "" : " or an integer",
                                      ", got ", Dump(*id)));
  }
  InferRequest r;
  r.line = line;
  r.id = *id;
  const std::string e = format == InferFormat::kOpenAi ? ParseOpenAi(j, r) : ParseBaton(j, r);
  if (!e.empty()) return fail(*id, e);
  out.request = std::move(r);
  return out;
}

namespace {

std::string RequestId(const json& custom_id) {
  return absl::StrFormat("batch_req_%016x", Fnv1a64(IdKey(custom_id)));
}

std::string Where(const InferLineError& e) {
  return e.id.is_null() ? absl::StrCat("line ", e.line) : absl::StrCat("line ", e.line, " (id ", Dump(e.id), ")");
}

}  // namespace

std::string FormatResult(InferFormat format, const InferRequest& r, const InferResult& res) {
  const int64_t completion = static_cast<int64_t>(res.tokens.size());
  if (format == InferFormat::kBaton) {
    return Dump(json{{"id", r.id},
                     {"text", res.text},
                     {"tokens", res.tokens},
                     {"finish_reason", res.finish_reason},
                     {"prompt_tokens", res.prompt_tokens},
                     {"completion_tokens", completion},
                     {"ttft_s", res.ttft_s},
                     {"latency_s", res.latency_s}});
  }
  const std::string rid = RequestId(r.id);
  json body = {{"id", "cmpl-" + rid.substr(10)},
               {"object", "text_completion"},
               {"created", static_cast<int64_t>(::time(nullptr))},
               {"model", r.model},
               {"choices", json::array({json{{"text", res.text},
                                              {"index", 0},
                                              {"logprobs", nullptr},
                                              {"finish_reason", res.finish_reason}}})},
               {"usage", {{"prompt_tokens", res.prompt_tokens},
                          {"completion_tokens", completion},
                          {"total_tokens", res.prompt_tokens + completion}}}};
  return Dump(json{{"id", rid},
                   {"custom_id", r.id},
                   {"response", {{"status_code", 200}, {"request_id", rid}, {"body", std::move(body)}}},
                   {"error", nullptr}});
}

std::string FormatError(InferFormat format, const InferLineError& e) {
  const std::string message = absl::StrCat(Where(e), ": ", e.message);
  if (format == InferFormat::kBaton) {
    return Dump(json{{"id", e.id}, {"line", e.line}, {"error", message}});
  }
  return Dump(json{{"id", RequestId(e.id.is_null() ? json(absl::StrCat("line ", e.line)) : e.id)},
                   {"custom_id", e.id},
                   {"response", nullptr},
                   {"error", {{"code", "invalid_request"}, {"message", message}, {"line", e.line}}}});
}

absl::StatusOr<AnsweredSet> ReadAnswered(const std::string& path, bool repair) {
  AnsweredSet a;
  std::ifstream in(path, std::ios::binary);
  if (!in) return a;  // nothing answered yet
  std::string text((std::istreambuf_iterator<char>(in)), {});
  in.close();
  size_t good_end = 0;  // the end of the last complete line
  for (size_t start = 0; start < text.size();) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;  // a torn tail: no newline
    good_end = nl + 1;
    const json j = json::parse(text.begin() + static_cast<int64_t>(start), text.begin() + static_cast<int64_t>(nl),
                               nullptr, /*allow_exceptions=*/false);
    start = nl + 1;
    if (!j.is_object()) continue;  // a damaged line: its request runs again
    ++a.lines;
    const json& id = j.contains("custom_id") ? j["custom_id"] : (j.contains("id") ? j["id"] : json());
    if (!id.is_null()) {
      a.ids.insert(IdKey(id));
    } else if (j.contains("line") && j["line"].is_number_integer()) {
      a.id_less.insert(j["line"].get<int64_t>());
    } else if (j.contains("error") && j["error"].is_object() && j["error"].contains("line")) {
      a.id_less.insert(j["error"]["line"].get<int64_t>());
    }
  }
  if (good_end < text.size()) {
    a.cut_torn_tail = true;
    if (repair && ::truncate(path.c_str(), static_cast<off_t>(good_end)) != 0) {
      return absl::InternalError(absl::StrCat("cutting the torn last line of ", path, ": ", std::strerror(errno)));
    }
  }
  return a;
}

absl::StatusOr<InferOutput> InferOutput::Open(const std::string& path, bool repair) {
  absl::StatusOr<AnsweredSet> answered = ReadAnswered(path, repair);
  if (!answered.ok()) return answered.status();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("--out ", path, ": ", std::strerror(errno)));
  InferOutput out(path, fd);
  out.answered_ = std::move(*answered);
  return out;
}

InferOutput::InferOutput(InferOutput&& o) noexcept
    : path_(std::move(o.path_)), fd_(o.fd_), answered_(std::move(o.answered_)) {
  o.fd_ = -1;
}

InferOutput::~InferOutput() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status InferOutput::Append(const std::string& line) {
  const std::string record = line + "\n";
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = ::write(fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace baton
