// Reading and checking the [infer] config (see infer_config.h).
#include "launcher/infer_config.h"

#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include <toml++/toml.h>

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

using Setter = std::function<absl::Status(const toml::node&, const std::string&)>;

Setter Int(int64_t& out) {
  return [&out](const toml::node& n, const std::string& key) {
    if (!n.is_integer()) return Bad(key, ": expected an integer");
    out = n.as_integer()->get();
    return absl::OkStatus();
  };
}
Setter Int32(int& out) {
  return [&out](const toml::node& n, const std::string& key) {
    if (!n.is_integer()) return Bad(key, ": expected an integer");
    out = static_cast<int>(n.as_integer()->get());
    return absl::OkStatus();
  };
}
Setter Real(double& out) {
  return [&out](const toml::node& n, const std::string& key) {
    if (!n.is_number()) return Bad(key, ": expected a number");
    out = n.is_integer() ? static_cast<double>(n.as_integer()->get()) : n.as_floating_point()->get();
    return absl::OkStatus();
  };
}
Setter Str(std::string& out) {
  return [&out](const toml::node& n, const std::string& key) {
    if (!n.is_string()) return Bad(key, ": expected a string");
    out = n.as_string()->get();
    return absl::OkStatus();
  };
}
Setter Bool(bool& out) {
  return [&out](const toml::node& n, const std::string& key) {
    if (!n.is_boolean()) return Bad(key, ": expected true or false");
    out = n.as_boolean()->get();
    return absl::OkStatus();
  };
}

std::map<std::string, Setter> Keys(InferConfig& c) {
  return {{"infer.device", Str(c.device)},
          {"infer.dtype", Str(c.dtype)},
          {"infer.block_size", Int(c.block_size)},
          {"infer.kv_cache_bytes", Int(c.kv_cache_bytes)},
          {"infer.kv_cache_fraction", Real(c.kv_cache_fraction)},
          {"infer.max_batch", Int32(c.max_batch)},
          {"infer.max_prefill_tokens", Int(c.max_prefill_tokens)},
          {"infer.max_seq_len", Int(c.max_seq_len)},
          {"infer.max_new_tokens", Int(c.max_new_tokens)},
          {"infer.temperature", Real(c.temperature)},
          {"infer.top_k", Int32(c.top_k)},
          {"infer.top_p", Real(c.top_p)},
          {"infer.seed", Int(c.seed)},
          {"infer.stop_at_eos", Bool(c.stop_at_eos)},
          {"infer.add_bos", Bool(c.add_bos)},
          {"infer.cuda_graphs", Bool(c.cuda_graphs)},
          {"infer.metrics_prom", Str(c.metrics_prom)},
          {"infer.progress", Str(c.progress)},
          {"parallel.tp", Int32(c.tp)},
          {"parallel.pp", Int32(c.pp)}};
}

std::string KnownKeys(const std::map<std::string, Setter>& keys) {
  std::vector<std::string> names;
  for (const auto& [k, v] : keys) names.push_back(k);
  return absl::StrJoin(names, ", ");
}

}  // namespace

absl::Status InferConfig::Validate() const {
  if (device != "auto" && device != "cpu" && device != "cuda") {
    return Bad("infer.device=\"", device, "\" must be \"auto\", \"cpu\" or \"cuda\"");
  }
  if (dtype != "auto" && dtype != "f32" && dtype != "f64" && dtype != "bf16") {
    return Bad("infer.dtype=\"", dtype, "\" must be \"auto\", \"f32\", \"f64\" (cpu) or \"bf16\" (cuda)");
  }
  if (device == "cuda" && dtype == "f64") return Bad("infer.dtype=\"f64\" runs on the CPU only (infer.device=cpu)");
  if (device == "cpu" && dtype == "bf16") return Bad("infer.dtype=\"bf16\" needs infer.device=cuda");
  if (block_size < 1) return Bad("infer.block_size=", block_size, " must be >= 1");
  if (kv_cache_bytes < 1) return Bad("infer.kv_cache_bytes=", kv_cache_bytes, " must be >= 1");
  if (!(kv_cache_fraction > 0 && kv_cache_fraction <= 1)) {
    return Bad("infer.kv_cache_fraction=", kv_cache_fraction, " must be in (0, 1]");
  }
  if (max_batch < 1) return Bad("infer.max_batch=", max_batch, " must be >= 1");
  if (max_prefill_tokens < 1) return Bad("infer.max_prefill_tokens=", max_prefill_tokens, " must be >= 1");
  if (max_seq_len < 0) return Bad("infer.max_seq_len=", max_seq_len, " must be >= 0 (0 = the checkpoint's)");
  if (max_new_tokens < 1) return Bad("infer.max_new_tokens=", max_new_tokens, " must be >= 1");
  if (!(temperature >= 0)) return Bad("infer.temperature=", temperature, " must be >= 0 (0 = greedy)");
  if (top_k < 0) return Bad("infer.top_k=", top_k, " must be >= 0 (0 = off)");
  if (!(top_p > 0 && top_p <= 1)) return Bad("infer.top_p=", top_p, " must be in (0, 1]");
  if (seed < 0) return Bad("infer.seed=", seed, " must be >= 0");
  if (progress != "auto" && progress != "bar" && progress != "lines") {
    return Bad("infer.progress=\"", progress, "\" must be \"auto\", \"bar\" or \"lines\"");
  }
  if (tp < 1 || pp < 1) return Bad("parallel.tp and parallel.pp must be >= 1");
  return absl::OkStatus();
}

absl::StatusOr<InferConfig> LoadInferConfig(const std::string& path, const std::vector<std::string>& overrides) {
  InferConfig c;
  std::map<std::string, Setter> keys = Keys(c);
  if (!path.empty()) {
    toml::table root;
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      return Bad(path, ":", e.source().begin.line, ": ", std::string(e.description()));
    } catch (const std::exception& e) {
      return absl::NotFoundError(absl::StrCat("--config ", path, ": cannot be read"));
    }
    for (const auto& [section, table] : root) {
      if (!table.is_table()) return Bad("unknown key '", std::string(section.str()), "' in ", path, " (expected [infer] or [parallel])");
      for (const auto& [key, value] : *table.as_table()) {
        const std::string full = absl::StrCat(std::string(section.str()), ".", std::string(key.str()));
        auto it = keys.find(full);
        if (it == keys.end()) {
          // [parallel].dp is the world size's business; accept it to share files with training.
          if (full == "parallel.dp") continue;
          return Bad("unknown key '", full, "' in ", path, " (known: ", KnownKeys(keys), ")");
        }
        BATON_RETURN_IF_ERROR(it->second(value, absl::StrCat(full, " in ", path)));
      }
    }
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos) return Bad("--set ", o, ": expected section.key=value");
    const std::string full = o.substr(0, eq), text = o.substr(eq + 1);
    auto it = keys.find(full);
    if (it == keys.end()) {
      if (full == "parallel.dp") continue;
      return Bad("unknown key '", full, "' in --set ", o, " (known: ", KnownKeys(keys), ")");
    }
    toml::table parsed;
    try {
      parsed = toml::parse(absl::StrCat("v = ", text));
    } catch (const toml::parse_error&) {
      parsed = toml::table{{"v", text}};  // a bare string
    }
    BATON_RETURN_IF_ERROR(it->second(*parsed.get("v"), absl::StrCat("--set ", o)));
  }
  BATON_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace baton
