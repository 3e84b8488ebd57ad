// TOML -> JobConfig (see config.h). Every key is declared once, in
// Fields(): the declaration gives its section, name, type and the member it
// fills, and drives reading, unknown-key detection, --set checks and the
// emitted source_text, so the four can never disagree.
#include "launcher/config.h"

#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <functional>
#include <limits>

#include <toml++/toml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

// ---- describing and emitting values

// One line, for "got ..." in messages.
std::string OneLine(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

std::string QuoteToml(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

// Shortest text that parses back to exactly `v`, always a TOML float.
template <typename F>
std::string FloatText(F v) {
  char buf[400];
  // Plain digits where they read well (0.001, 500000.0), else 1e-05.
  F mag = std::abs(v);
  bool fixed = mag == 0 || (mag >= F(1e-4) && mag < F(1e15));
  auto [end, ec] = fixed ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof buf, v);
  BATON_CHECK(ec == std::errc());
  std::string s(buf, end);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // "n": inf, nan
  return s;
}

std::string Describe(const toml::node& n) {
  if (auto s = n.as_string()) return absl::StrCat("string ", OneLine(QuoteToml(s->get())));
  if (auto i = n.as_integer()) return absl::StrCat("integer ", i->get());
  if (auto f = n.as_floating_point()) return absl::StrCat("float ", FloatText(f->get()));
  if (auto b = n.as_boolean()) return absl::StrCat("boolean ", b->get() ? "true" : "false");
  if (n.is_array()) return "an array";
  if (n.is_table()) return "a table";
  return "a date/time";
}

// ---- the key table

struct Field {
  const char* section;
  const char* key;
  // Reads `node` into the config; `name` is "section.key" for messages.
  std::function<absl::Status(const toml::node& node, const std::string& name)> read;
  std::function<std::string()> emit;  // TOML value text
};

template <typename Int>
Field IntField(const char* section, const char* key, Int* p) {
  return {section, key,
          [p](const toml::node& n, const std::string& name) -> absl::Status {
            auto i = n.as_integer();
            if (!i) return Bad(name, ": expected an integer, got ", Describe(n));
            int64_t v = i->get();
            if (v < std::numeric_limits<Int>::min() || v > std::numeric_limits<Int>::max())
              return Bad(name, "=", v, " is out of range for a ", sizeof(Int) * 8, "-bit integer");
            *p = static_cast<Int>(v);
            return absl::OkStatus();
          },
          [p] { return std::to_string(*p); }};
}

template <typename F>
Field FloatField(const char* section, const char* key, F* p) {
  return {section, key,
          [p](const toml::node& n, const std::string& name) -> absl::Status {
            double v;
            if (auto f = n.as_floating_point()) v = f->get();
            else if (auto i = n.as_integer()) v = static_cast<double>(i->get());
            else return Bad(name, ": expected a number, got ", Describe(n));
            if (std::isfinite(v) && !std::isfinite(static_cast<F>(v)))
              return Bad(name, "=", FloatText(v), " is out of range for a ", sizeof(F) * 8, "-bit float");
            *p = static_cast<F>(v);
            return absl::OkStatus();
          },
          [p] { return FloatText(*p); }};
}

Field BoolField(const char* section, const char* key, bool* p) {
  return {section, key,
          [p](const toml::node& n, const std::string& name) -> absl::Status {
            auto b = n.as_boolean();
            if (!b) return Bad(name, ": expected true or false, got ", Describe(n));
            *p = b->get();
            return absl::OkStatus();
          },
          [p] { return std::string(*p ? "true" : "false"); }};
}

Field StringField(const char* section, const char* key, std::string* p) {
  return {section, key,
          [p](const toml::node& n, const std::string& name) -> absl::Status {
            auto s = n.as_string();
            if (!s) return Bad(name, ": expected a string, got ", Describe(n));
            *p = s->get();
            return absl::OkStatus();
          },
          [p] { return QuoteToml(*p); }};
}

// An array of integers.
Field IntListField(const char* section, const char* key, std::vector<int>* p) {
  return {section, key,
          [p](const toml::node& n, const std::string& name) -> absl::Status {
            auto a = n.as_array();
            if (!a) return Bad(name, ": expected an array of integers, got ", Describe(n));
            std::vector<int> out;
            for (size_t i = 0; i < a->size(); ++i) {
              auto v = (*a)[i].as_integer();
              if (!v || v->get() < INT_MIN || v->get() > INT_MAX)
                return Bad(name, "[", i, "]: expected an integer, got ", Describe((*a)[i]));
              out.push_back(static_cast<int>(v->get()));
            }
            *p = std::move(out);
            return absl::OkStatus();
          },
          [p] { return absl::StrCat("[", absl::StrJoin(*p, ", "), "]"); }};
}

// An array of strings; a single string is a list of one (so --set works).
Field StringListField(const char* section, const char* key, std::vector<std::string>* p) {
  return {section, key,
          [p](const toml::node& n, const std::string& name) -> absl::Status {
            if (auto s = n.as_string()) {
              *p = {s->get()};
              return absl::OkStatus();
            }
            auto a = n.as_array();
            if (!a) return Bad(name, ": expected an array of strings, got ", Describe(n));
            std::vector<std::string> out;
            for (size_t i = 0; i < a->size(); ++i) {
              auto s = (*a)[i].as_string();
              if (!s) return Bad(name, "[", i, "]: expected a string, got ", Describe((*a)[i]));
              out.push_back(s->get());
            }
            *p = std::move(out);
            return absl::OkStatus();
          },
          [p] {
            std::vector<std::string> q;
            for (const std::string& s : *p) q.push_back(QuoteToml(s));
            return absl::StrCat("[", absl::StrJoin(q, ", "), "]");
          }};
}

// `names[i]` is the spelling of the enumerator with value i.
template <typename E>
Field EnumField(const char* section, const char* key, E* p, std::vector<const char*> names) {
  return {section, key,
          [p, names](const toml::node& n, const std::string& name) -> absl::Status {
            auto s = n.as_string();
            for (size_t i = 0; s && i < names.size(); ++i) {
              if (s->get() == names[i]) {
                *p = static_cast<E>(i);
                return absl::OkStatus();
              }
            }
            return Bad(name, ": expected one of ", absl::StrJoin(names, "|"), ", got ",
                       s ? OneLine(QuoteToml(s->get())) : Describe(n));
          },
          [p, names] { return QuoteToml(names[static_cast<size_t>(*p)]); }};
}

const char* const kSections[] = {"model",      "data",   "train",   "parallel", "recompute",
                                 "checkpoint", "output", "teacher", "distill",  "student"};

// Every key, in the order source_text lists them.
std::vector<Field> Fields(JobConfig& c) {
  ModelConfig& m = c.model;
  OptimizerConfig& o = c.train.optimizer;
  return {
      IntField("model", "layers", &m.layers),
      IntField("model", "dim", &m.dim),
      IntField("model", "heads", &m.heads),
      IntField("model", "kv_heads", &m.kv_heads),
      IntField("model", "ffn_dim", &m.ffn_dim),
      IntField("model", "vocab_size", &m.vocab_size),
      FloatField("model", "rope_theta", &m.rope_theta),
      EnumField("model", "rope_scaling", &m.rope_scaling.type, {"none", "linear", "llama3"}),
      FloatField("model", "rope_scaling_factor", &m.rope_scaling.factor),
      FloatField("model", "rope_low_freq_factor", &m.rope_scaling.low_freq_factor),
      FloatField("model", "rope_high_freq_factor", &m.rope_scaling.high_freq_factor),
      IntField("model", "rope_original_max_position", &m.rope_scaling.original_max_position),
      FloatField("model", "norm_eps", &m.norm_eps),
      BoolField("model", "tie_embeddings", &m.tie_embeddings),
      BoolField("model", "qkv_bias", &m.qkv_bias),
      FloatField("model", "init_std", &m.init_std),

      StringField("data", "path", &c.data.path),
      FloatField("data", "val_fraction", &c.data.val_fraction),
      StringListField("data", "corpus", &c.data.corpus),
      StringField("data", "tokenizer", &c.data.tokenizer),

      IntField("train", "steps", &c.train.steps),
      IntField("train", "seed", &c.train.seed),
      IntField("train", "micro_batch_size", &c.train.micro_batch_size),
      IntField("train", "global_batch_size", &c.train.global_batch_size),
      IntField("train", "seq_len", &c.train.seq_len),
      IntField("train", "eval_every", &c.train.eval_every),
      IntField("train", "eval_batches", &c.train.eval_batches),
      IntField("train", "log_every", &c.train.log_every),
      StringField("train", "device", &c.train.device),
      BoolField("train", "share_gpus", &c.train.share_gpus),
      StringField("train", "precision", &c.train.precision),
      IntField("train", "exit_interval", &c.train.exit_interval),
      FloatField("train", "lr", &o.lr),
      FloatField("train", "min_lr", &o.min_lr),
      IntField("train", "warmup_steps", &o.warmup_steps),
      EnumField("train", "decay", &o.decay, {"cosine", "linear", "constant"}),
      FloatField("train", "weight_decay", &o.weight_decay),
      FloatField("train", "beta1", &o.beta1),
      FloatField("train", "beta2", &o.beta2),
      FloatField("train", "eps", &o.eps),
      FloatField("train", "grad_clip", &o.grad_clip),

      IntField("parallel", "dp", &c.parallel.dp),
      IntField("parallel", "pp", &c.parallel.pp),
      IntField("parallel", "tp", &c.parallel.tp),
      EnumField("parallel", "schedule", &c.parallel.schedule, {"gpipe", "1f1b", "interleaved", "zb-h1"}),
      IntField("parallel", "virtual_stages", &c.parallel.virtual_stages),
      IntField("parallel", "microbatches", &c.parallel.microbatches),
      EnumField("parallel", "p2p", &c.parallel.p2p, {"mpi", "ucx", "nccl"}),
      IntField("parallel", "zero", &c.parallel.zero),
      BoolField("parallel", "sequence_parallel", &c.parallel.sequence_parallel),
      IntListField("parallel", "layers_per_stage", &c.parallel.layers_per_stage),
      FloatField("parallel", "bucket_mb", &c.parallel.bucket_mb),
      FloatField("parallel", "timeout_s", &c.parallel.timeout_s),

      EnumField("recompute", "policy", &c.recompute.policy, {"none", "full", "selective", "every_k"}),
      IntField("recompute", "every_k", &c.recompute.every_k),

      StringField("checkpoint", "dir", &c.checkpoint.dir),
      IntField("checkpoint", "every", &c.checkpoint.every),
      StringField("checkpoint", "resume", &c.checkpoint.resume),
      IntField("checkpoint", "keep", &c.checkpoint.keep),

      StringField("output", "metrics", &c.output.metrics),
      StringField("output", "trace", &c.output.trace),
      EnumField("output", "progress", &c.output.progress, {"auto", "bar", "lines"}),
      FloatField("output", "peak_tflops", &c.output.peak_tflops),

      StringField("teacher", "checkpoint", &c.teacher.checkpoint),

      FloatField("distill", "alpha", &c.distill.alpha),
      FloatField("distill", "temperature", &c.distill.temperature),
      EnumField("distill", "mode", &c.distill.mode, {"online", "offline"}),
      IntField("distill", "topk", &c.distill.topk),
      StringField("distill", "logits_path", &c.distill.logits_path),

      EnumField("student", "init", &c.student.init, {"random", "teacher-layers"}),
      IntListField("student", "layers_from", &c.student.layers_from),
  };
}

// ---- suggestions for misspelt keys

// Optimal string alignment distance: a swap of neighbours costs 1 ("stesp").
int EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean 'x'?)" or "". `key` is the bare key, `full` section.key.
std::string Suggest(const std::vector<std::string>& known, std::string_view full, std::string_view key) {
  std::string best;
  for (const std::string& k : known) {  // the right key in the wrong section: "train.dp" -> "parallel.dp"
    if (!key.empty() && k.substr(k.find('.') + 1) == key) best = k;
  }
  int best_d = std::max<int>(2, static_cast<int>(full.size()) / 4) + 1;
  for (const std::string& k : known) {
    if (!best.empty()) break;
    int d = EditDistance(full, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean '", best, "'?)");
}

std::vector<std::string> KnownNames(const std::vector<Field>& fields) {
  std::vector<std::string> out;
  for (const Field& f : fields) out.push_back(absl::StrCat(f.section, ".", f.key));
  return out;
}

bool IsSection(std::string_view s) {
  for (const char* k : kSections) {
    if (s == k) return true;
  }
  return false;
}

// ---- overrides

// "section.key=value": the value is TOML if it parses as one, else a bare string.
absl::Status ApplyOverride(toml::table& root, const std::string& override_text,
                           const std::vector<std::string>& known) {
  size_t eq = override_text.find('=');
  size_t dot = override_text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
    std::string key = override_text.substr(0, eq);  // "steps=3": which section?
    return Bad("--set ", OneLine(override_text), ": expected section.key=value", Suggest(known, "", key));
  }
  std::string full = override_text.substr(0, eq);
  std::string section = full.substr(0, dot), key = full.substr(dot + 1);
  std::string value_text = override_text.substr(eq + 1);
  bool is_known = false;
  for (const std::string& k : known) is_known |= (k == full);
  if (!is_known)
    return Bad("unknown key '", OneLine(full), "' in --set ", OneLine(override_text), Suggest(known, full, key));

  toml::table* sec = root[section].as_table();
  if (sec == nullptr) {
    if (root.contains(section))
      return Bad(section, ": expected a table, got ", Describe(*root.get(section)));
    root.insert(section, toml::table{});
    sec = root[section].as_table();
  }
  bool set = false;
  try {
    toml::table parsed = toml::parse(absl::StrCat("v = ", value_text));
    toml::node* v = parsed.get("v");
    if (v != nullptr && parsed.size() == 1 && !v->is_date() && !v->is_time() && !v->is_date_time()) {
      v->visit([&](auto& n) { sec->insert_or_assign(key, n); });
      set = true;
    }
  } catch (const toml::parse_error&) {
  }
  if (!set) sec->insert_or_assign(key, value_text);
  return absl::OkStatus();
}

absl::Status CheckNoUnknownKeys(const toml::table& root, const std::string& source_name,
                                const std::vector<std::string>& known) {
  for (const auto& [k, v] : root) {
    std::string name(k.str());
    if (!IsSection(name)) {
      if (v.is_table())
        return Bad("unknown section '", OneLine(name), "' in ", source_name,
                   Suggest({std::begin(kSections), std::end(kSections)}, name, ""));
      std::string hint = Suggest(known, "", name);  // "steps = 3" at the top: which section?
      return Bad("unknown key '", OneLine(name), "' in ", source_name, " (keys belong in a section",
                 hint.empty() ? absl::StrCat(": ", absl::StrJoin(kSections, ", "), ")")
                              : absl::StrCat("; ", hint.substr(2)));
    }
    const toml::table* sec = v.as_table();
    if (sec == nullptr) return Bad(name, ": expected a table, got ", Describe(v));
    for (const auto& [sk, sv] : *sec) {
      std::string bare(sk.str());
      std::string full = absl::StrCat(name, ".", bare);
      bool is_known = false;
      for (const std::string& kn : known) is_known |= (kn == full);
      if (!is_known)
        return Bad("unknown key '", OneLine(full), "' in ", source_name, Suggest(known, full, bare));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ---- public API

const char* P2pTransportName(P2pTransport t) {
  switch (t) {
    case P2pTransport::kMpi: return "mpi";
    case P2pTransport::kUcx: return "ucx";
    case P2pTransport::kNccl: return "nccl";
  }
  return "?";
}

const char* ProgressModeName(ProgressMode m) {
  switch (m) {
    case ProgressMode::kAuto: return "auto";
    case ProgressMode::kBar: return "bar";
    case ProgressMode::kLines: return "lines";
  }
  return "?";
}

const char* DistillModeName(DistillMode m) { return m == DistillMode::kOnline ? "online" : "offline"; }

const char* StudentInitName(StudentInit i) { return i == StudentInit::kRandom ? "random" : "teacher-layers"; }

int JobConfig::microbatches() const {
  if (parallel.microbatches > 0) return parallel.microbatches;
  int per_step = train.micro_batch_size * parallel.dp;
  return per_step > 0 ? train.global_batch_size / per_step : 0;
}

std::string JobConfigToToml(const JobConfig& config) {
  JobConfig copy = config;  // Fields() wants a mutable config; emit only reads
  std::vector<Field> fields = Fields(copy);
  std::string out;
  std::string_view section;
  for (const Field& f : fields) {
    if (section != f.section) {
      absl::StrAppend(&out, out.empty() ? "" : "\n", "[", f.section, "]\n");
      section = f.section;
    }
    absl::StrAppend(&out, f.key, " = ", f.emit(), "\n");
  }
  return out;
}

absl::StatusOr<JobConfig> ParseJobConfig(std::string_view toml_text, std::string_view source_name_view,
                                         const std::vector<std::string>& overrides) {
  const std::string source_name(source_name_view);
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return Bad(source_name, ":", e.source().begin.line, ":", e.source().begin.column,
               ": invalid TOML: ", OneLine(e.description()));
  }
  JobConfig config;
  std::vector<Field> fields = Fields(config);
  std::vector<std::string> known = KnownNames(fields);
  for (const std::string& o : overrides) BATON_RETURN_IF_ERROR(ApplyOverride(root, o, known));
  BATON_RETURN_IF_ERROR(CheckNoUnknownKeys(root, source_name, known));
  for (size_t i = 0; i < fields.size(); ++i) {
    const toml::node* n = root.at_path(known[i]).node();
    if (n != nullptr) BATON_RETURN_IF_ERROR(fields[i].read(*n, known[i]));
  }
  BATON_RETURN_IF_ERROR(ValidateJobConfig(config));
  config.source_text = JobConfigToToml(config);
  return config;
}

absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path, const std::vector<std::string>& overrides) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return Bad("cannot read config ", text.status().message());
  return ParseJobConfig(*text, path, overrides);
}

}  // namespace baton
