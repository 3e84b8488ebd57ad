// Hugging Face model directories <-> baton models (see hf_model.h). The HF
// side follows transformers' LlamaConfig / Qwen2Config defaults and its
// sharded-checkpoint layout (modeling_utils: "model-00001-of-00002.safetensors"
// plus an index {"metadata": {"total_size": N}, "weight_map": {name: file}}).
#include "checkpoints/hf_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoints/safetensors.h"
#include "kernels/check.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

using Json = nlohmann::json;

// StrCat takes absl::string_view, which Debian's Abseil does not alias to std::string_view.
absl::string_view Piece(std::string_view s) { return absl::string_view(s.data(), s.size()); }
template <typename T>
const T& Piece(const T& v) {
  return v;
}
absl::Status Bad(const auto&... parts) { return absl::InvalidArgumentError(absl::StrCat(Piece(parts)...)); }

// Writes through PATH.tmp and a rename, like every other file we produce.
absl::Status WriteTextAtomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat("write ", tmp, ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  bool ok = ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("writing ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

// ---- config.json

// An integer key: `fallback` when absent (or null) if given, else an error.
absl::StatusOr<int64_t> IntKey(const Json& j, const char* key, std::string_view path,
                               std::optional<int64_t> fallback = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return Bad(path, ": missing key ", key);
  }
  if (!it->is_number_integer()) return Bad(path, ": ", key, " must be an integer, got ", it->dump());
  return it->get<int64_t>();
}

absl::StatusOr<double> NumberKey(const Json& j, const char* key, std::string_view path, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) return Bad(path, ": ", key, " must be a number, got ", it->dump());
  return it->get<double>();
}

absl::StatusOr<bool> BoolKey(const Json& j, const char* key, std::string_view path, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Bad(path, ": ", key, " must be true or false, got ", it->dump());
  return it->get<bool>();
}

absl::Status NotSupported(std::string_view path, std::string_view key, const Json& value) {
  return Bad(path, ": ", key, "=", value.dump(), " is not supported yet (baton's ",
             "Llama/Qwen2 model has no such variant)");
}

// A positive finite number in a rope dict; `where` names the dict in errors.
absl::StatusOr<double> PositiveRopeKey(const Json& rp, const char* key, std::string_view where, std::string_view path) {
  auto it = rp.find(key);
  if (it == rp.end() || it->is_null()) return Bad(path, ": ", where, ".", key, " is missing");
  if (!it->is_number() || !(it->get<double>() > 0) || !std::isfinite(it->get<double>())) {
    return Bad(path, ": ", where, ".", key, " must be a positive number, got ", it->dump());
  }
  return it->get<double>();
}

// RoPE theta and scaling. transformers 4 writes rope_theta at the top level
// and rope_scaling (null, or {"rope_type" or legacy "type", "factor", ...});
// transformers 5 writes rope_parameters {"rope_type", "rope_theta", ...}
// and, like it, we prefer rope_scaling when both are given
// (PreTrainedConfig.convert_rope_params_to_dict). Types default, linear and
// llama3 map exactly; any other type or key is refused by name.
absl::StatusOr<RopeParams> ParseRope(const Json& j, std::string_view path, int64_t max_position_embeddings) {
  RopeParams out;
  BATON_ASSIGN_OR_RETURN(out.theta, NumberKey(j, "rope_theta", path, 10000.0));
  std::string where = "rope_scaling";
  auto rp = j.find(where);
  if (rp == j.end() || rp->is_null()) {
    where = "rope_parameters";
    rp = j.find(where);
    if (rp == j.end() || rp->is_null()) return out;
  }
  if (!rp->is_object()) return Bad(path, ": ", where, " must be an object, got ", rp->dump());
  std::string type = "default", type_key = "rope_type";
  for (const char* key : {"type", "rope_type"}) {  // rope_type wins, as in transformers
    if (auto it = rp->find(key); it != rp->end() && !it->is_null()) {
      if (!it->is_string()) return Bad(path, ": ", where, ".", key, " must be a string, got ", it->dump());
      type = it->get<std::string>();
      type_key = key;
    }
  }
  std::set<std::string> allowed = {"type", "rope_type", "rope_theta"};
  if (type == "linear") {
    out.scaling.type = RopeScaling::Type::kLinear;
    allowed.insert("factor");
  } else if (type == "llama3") {
    out.scaling.type = RopeScaling::Type::kLlama3;
    allowed.insert({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  } else if (type != "default") {
    return Bad(path, ": ", where, ".", type_key, "=\"", type,
               "\" is not supported yet (baton supports default, linear and llama3)");
  }
  for (auto& [k, v] : rp->items()) {
    if (allowed.count(k)) continue;
    if (k == "partial_rotary_factor" && v.is_number() && v.get<double>() == 1.0) continue;
    return NotSupported(path, absl::StrCat(where, ".", k), v);
  }
  if (rp->contains("rope_theta")) {
    BATON_ASSIGN_OR_RETURN(out.theta, NumberKey(*rp, "rope_theta", path, 10000.0));
  }
  if (out.scaling.type == RopeScaling::Type::kNone) return out;
  BATON_ASSIGN_OR_RETURN(out.scaling.factor, PositiveRopeKey(*rp, "factor", where, path));
  if (out.scaling.type == RopeScaling::Type::kLinear) return out;
  BATON_ASSIGN_OR_RETURN(out.scaling.low_freq_factor, PositiveRopeKey(*rp, "low_freq_factor", where, path));
  BATON_ASSIGN_OR_RETURN(out.scaling.high_freq_factor, PositiveRopeKey(*rp, "high_freq_factor", where, path));
  if (!(out.scaling.high_freq_factor > out.scaling.low_freq_factor)) {
    return Bad(path, ": ", where, ".high_freq_factor=", out.scaling.high_freq_factor,
               " must be greater than low_freq_factor=", out.scaling.low_freq_factor);
  }
  // transformers falls back to max_position_embeddings (standardize_rope_params).
  const std::string orig_key = absl::StrCat(where, ".original_max_position_embeddings");
  auto it = rp->find("original_max_position_embeddings");
  if (it == rp->end() || it->is_null()) {
    if (max_position_embeddings <= 0) {
      return Bad(path, ": ", orig_key, " is missing (and no max_position_embeddings to fall back on)");
    }
    out.scaling.original_max_position = max_position_embeddings;
  } else if (!it->is_number_integer() || it->get<int64_t>() < 1) {
    return Bad(path, ": ", orig_key, " must be a positive integer, got ", it->dump());
  } else {
    out.scaling.original_max_position = it->get<int64_t>();
  }
  return out;
}

// The float closest to `f`, printed in as few digits as give it back (1e-06, not 9.99999997e-07).
double ShortestDouble(float f) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, f);
  BATON_CHECK(ec == std::errc());
  return std::strtod(std::string(buf, end).c_str(), nullptr);
}

// ---- names

// "layers.N." + rest, with N a plain decimal; sets *layer and *rest.
bool SplitLayer(std::string_view name, std::string_view prefix, int64_t* layer, std::string_view* rest) {
  if (!name.starts_with(prefix)) return false;
  name.remove_prefix(prefix.size());
  size_t dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;
  std::string_view digits = name.substr(0, dot);
  if (digits[0] < '0' || digits[0] > '9' || (digits.size() > 1 && digits[0] == '0')) return false;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *layer);
  if (ec != std::errc() || p != digits.data() + digits.size()) return false;
  *rest = name.substr(dot + 1);
  return true;
}

// (baton suffix, HF suffix) inside one layer.
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"attn_norm", "input_layernorm.weight"},
    {"attn.wq", "self_attn.q_proj.weight"},
    {"attn.wk", "self_attn.k_proj.weight"},
    {"attn.wv", "self_attn.v_proj.weight"},
    {"attn.bq", "self_attn.q_proj.bias"},
    {"attn.bk", "self_attn.k_proj.bias"},
    {"attn.bv", "self_attn.v_proj.bias"},
    {"attn.wo", "self_attn.o_proj.weight"},
    {"mlp_norm", "post_attention_layernorm.weight"},
    {"mlp.w_gate", "mlp.gate_proj.weight"},
    {"mlp.w_up", "mlp.up_proj.weight"},
    {"mlp.w_down", "mlp.down_proj.weight"},
};
constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"embed", "model.embed_tokens.weight"},
    {"final_norm", "model.norm.weight"},
    {"lm_head", "lm_head.weight"},
};

// ---- weights on disk

// Which file holds each tensor: the index's weight_map, or the single file.
absl::StatusOr<std::map<std::string, std::string>> WeightFiles(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  std::map<std::string, std::string> files;
  if (fs::exists(index_path)) {
    BATON_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(index_path));
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Bad(index_path, ": not valid JSON");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) return Bad(index_path, ": no \"weight_map\" object");
    for (auto& [name, file] : wm->items()) {
      if (!file.is_string()) return Bad(index_path, ": weight_map[\"", name, "\"] is not a file name");
      std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
        return Bad(index_path, ": weight_map[\"", name, "\"] = \"", f, "\" is not a file name in ", dir);
      }
      files[name] = dir + "/" + f;
    }
    return files;
  }
  if (!fs::exists(single)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json",
                                            fs::exists(dir + "/pytorch_model.bin")
                                                ? " (only safetensors weights are supported, not pytorch_model.bin)"
                                                : ""));
  }
  BATON_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(single));
  for (const SafetensorsEntry& e : f.entries()) files[e.name] = single;
  return files;
}

absl::StatusOr<Tensor> ReadFloatTensor(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsEntry* e = f.Find(name);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat(f.path(), ": tensor ", name, " is missing"));
  if (e->dtype != "F32" && e->dtype != "F16" && e->dtype != "BF16" && e->dtype != "F64") {
    return Bad(f.path(), ": tensor ", name, " has dtype ", e->dtype, " (expected F32, F16, BF16 or F64)");
  }
  return f.ReadAsF32(name);
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

// ---- config.json

absl::StatusOr<HfConfig> ParseHfConfig(std::string_view json_text, std::string_view path) {
  Json j = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Bad(path, ": not a JSON object");
  HfConfig out;
  auto arch = j.find("architectures");
  if (arch != j.end() && !arch->is_null()) {
    if (!arch->is_array() || arch->size() != 1 || !(*arch)[0].is_string()) {
      return Bad(path, ": architectures must be a list of one name, got ", arch->dump());
    }
    out.architecture = (*arch)[0].get<std::string>();
  } else if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string()) {
    // Configs built in code carry only model_type until a model is saved.
    if (*mt == "llama") out.architecture = kHfLlamaArchitecture;
    if (*mt == "qwen2") out.architecture = kHfQwen2Architecture;
    if (out.architecture.empty()) out.architecture = absl::StrCat("model_type ", mt->dump());
  } else {
    return Bad(path, ": missing key architectures (and no model_type)");
  }
  const bool qwen2 = out.architecture == kHfQwen2Architecture;
  if (!qwen2 && out.architecture != kHfLlamaArchitecture) {
    return Bad(path, ": architecture ", out.architecture, " is not supported (expected ", kHfLlamaArchitecture,
               " or ", kHfQwen2Architecture, ")");
  }

  ModelConfig& m = out.model;
  BATON_ASSIGN_OR_RETURN(int64_t hidden, IntKey(j, "hidden_size", path));
  BATON_ASSIGN_OR_RETURN(int64_t layers, IntKey(j, "num_hidden_layers", path));
  BATON_ASSIGN_OR_RETURN(int64_t heads, IntKey(j, "num_attention_heads", path));
  BATON_ASSIGN_OR_RETURN(int64_t kv_heads, IntKey(j, "num_key_value_heads", path, heads));
  BATON_ASSIGN_OR_RETURN(int64_t ffn, IntKey(j, "intermediate_size", path));
  BATON_ASSIGN_OR_RETURN(int64_t vocab, IntKey(j, "vocab_size", path));
  for (auto [key, v] : {std::pair{"hidden_size", hidden}, {"num_hidden_layers", layers},
                        {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads},
                        {"intermediate_size", ffn}, {"vocab_size", vocab}}) {
    if (v < 1 || v > (int64_t{1} << 30)) return Bad(path, ": ", key, "=", v, " is out of range");
  }
  if (hidden % heads != 0) {
    return Bad(path, ": num_attention_heads=", heads, " does not divide hidden_size=", hidden);
  }
  BATON_ASSIGN_OR_RETURN(int64_t head_dim, IntKey(j, "head_dim", path, hidden / heads));
  if (head_dim != hidden / heads) {
    return Bad(path, ": head_dim=", head_dim, " != hidden_size/num_attention_heads=", hidden / heads,
               " (not supported yet)");
  }
  m.dim = static_cast<int>(hidden);
  m.layers = static_cast<int>(layers);
  m.heads = static_cast<int>(heads);
  m.kv_heads = static_cast<int>(kv_heads);
  m.ffn_dim = static_cast<int>(ffn);
  m.vocab_size = static_cast<int>(vocab);
  BATON_ASSIGN_OR_RETURN(out.max_position_embeddings, IntKey(j, "max_position_embeddings", path, 0));
  BATON_ASSIGN_OR_RETURN(RopeParams rope, ParseRope(j, path, out.max_position_embeddings));
  m.rope_theta = rope.theta;
  m.rope_scaling = rope.scaling;
  BATON_ASSIGN_OR_RETURN(double eps, NumberKey(j, "rms_norm_eps", path, 1e-6));
  m.norm_eps = static_cast<float>(eps);
  BATON_ASSIGN_OR_RETURN(m.tie_embeddings, BoolKey(j, "tie_word_embeddings", path, false));
  BATON_ASSIGN_OR_RETURN(double init_std, NumberKey(j, "initializer_range", path, 0.02));
  m.init_std = static_cast<float>(init_std);
  m.qkv_bias = qwen2;

  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null() && *it != "silu") {
    return NotSupported(path, "hidden_act", *it);
  }
  for (const char* key : {"attention_bias", "mlp_bias", "use_sliding_window"}) {
    BATON_ASSIGN_OR_RETURN(bool on, BoolKey(j, key, path, false));
    // Qwen2's q/k/v biases are not attention_bias; Llama's would add an o_proj bias.
    if (on) return NotSupported(path, key, true);
  }
  for (auto [key, dst] : {std::pair{"bos_token_id", &out.bos_token_id}, {"eos_token_id", &out.eos_token_id}}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_number_integer()) *dst = it->get<int64_t>();
  }
  absl::Status valid = m.Validate();
  if (!valid.ok()) return Bad(path, ": ", valid.message());
  return out;
}

const char* HfArchitectureFor(const ModelConfig& m) {
  return m.qkv_bias ? kHfQwen2Architecture : kHfLlamaArchitecture;
}

std::string HfConfigJson(const ModelConfig& m, int64_t max_position_embeddings, int64_t bos_token_id,
                         int64_t eos_token_id, std::string_view torch_dtype) {
  const bool qwen2 = m.qkv_bias;
  Json j = {
      {"architectures", {HfArchitectureFor(m)}},
      {"model_type", qwen2 ? "qwen2" : "llama"},
      {"hidden_size", m.dim},
      {"num_hidden_layers", m.layers},
      {"num_attention_heads", m.heads},
      {"num_key_value_heads", m.kv_heads},
      {"intermediate_size", m.ffn_dim},
      {"vocab_size", m.vocab_size},
      {"hidden_act", "silu"},
      {"rope_theta", m.rope_theta},
      {"rms_norm_eps", ShortestDouble(m.norm_eps)},
      {"tie_word_embeddings", m.tie_embeddings},
      {"max_position_embeddings", max_position_embeddings},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"initializer_range", ShortestDouble(m.init_std)},
      {"attention_dropout", 0.0},
      {"use_cache", true},
      {"torch_dtype", std::string(torch_dtype)},
  };
  // transformers 4 spelling, which 5 also reads (and vLLM, llama.cpp's converter).
  const RopeScaling& rs = m.rope_scaling;
  if (rs.type == RopeScaling::Type::kLinear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rs.factor}};
  } else if (rs.type == RopeScaling::Type::kLlama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rs.factor},
                         {"low_freq_factor", rs.low_freq_factor},
                         {"high_freq_factor", rs.high_freq_factor},
                         {"original_max_position_embeddings", rs.original_max_position}};
  }
  if (qwen2) {
    j["use_sliding_window"] = false;
  } else {
    j["head_dim"] = m.head_dim();
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  }
  return j.dump(2) + "\n";
}

std::string HfGenerationConfigJson(int64_t bos_token_id, int64_t eos_token_id) {
  Json j = {{"bos_token_id", bos_token_id}, {"eos_token_id", eos_token_id}};
  return j.dump(2) + "\n";
}

// ---- names

namespace {

// One name through the tables, baton to HF (to_hf) or back.
std::optional<std::string> MapName(std::string_view name, bool to_hf) {
  const std::string_view from_layers = to_hf ? "layers." : "model.layers.", to_layers = to_hf ? "model.layers." : "layers.";
  for (auto [baton, hf] : kGlobalNames) {
    if (name == (to_hf ? baton : hf)) return std::string(to_hf ? hf : baton);
  }
  int64_t layer;
  std::string_view rest;
  if (!SplitLayer(name, from_layers, &layer, &rest)) return std::nullopt;
  for (auto [baton, hf] : kLayerNames) {
    if (rest == (to_hf ? baton : hf)) return absl::StrCat(std::string(to_layers), layer, ".", to_hf ? hf : baton);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> BatonToHfName(std::string_view name) { return MapName(name, /*to_hf=*/true); }

std::optional<std::string> HfToBatonName(std::string_view name) { return MapName(name, /*to_hf=*/false); }

// ---- reading

absl::Status ReadHfWeights(const std::string& dir, Model& model) {
  BATON_CHECK(model.dtype() == DType::kF32);
  using FileMap = std::map<std::string, std::string>;
  BATON_ASSIGN_OR_RETURN(FileMap files, WeightFiles(dir));
  std::map<std::string, SafetensorsFile> open;  // path -> mapping
  auto file_of = [&](const std::string& path) -> absl::StatusOr<const SafetensorsFile*> {
    auto it = open.find(path);
    if (it == open.end()) {
      BATON_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(path));
      it = open.emplace(path, std::move(f)).first;
    }
    return &it->second;
  };
  const bool tied = model.config().tie_embeddings;
  std::set<std::string> loaded;
  for (const auto& [hf_name, path] : files) {
    if (hf_name.ends_with(".rotary_emb.inv_freq")) continue;  // a buffer, recomputed from theta
    std::optional<std::string> name = HfToBatonName(hf_name);
    Param* p = name ? model.FindParam(*name) : nullptr;
    const bool tied_head = tied && hf_name == "lm_head.weight";
    if (p == nullptr && !tied_head) {
      return Bad(path, ": unexpected tensor ", hf_name, " (not part of a ", HfArchitectureFor(model.config()),
                 " with this config.json)");
    }
    BATON_ASSIGN_OR_RETURN(const SafetensorsFile* f, file_of(path));
    BATON_ASSIGN_OR_RETURN(Tensor t, ReadFloatTensor(*f, hf_name));
    const Shape& want = tied_head ? model.FindParam("embed")->value.shape() : p->value.shape();
    if (t.shape() != want) {
      return Bad(path, ": tensor ", hf_name, " has shape ", ShapeString(t.shape()), ", expected ",
                 ShapeString(want));
    }
    if (tied_head) continue;  // compared with the embedding once that is loaded
    p->value.CopyFrom(t);
    loaded.insert(p->name);
  }
  for (const Param& p : model.params()) {
    if (!loaded.count(p.name)) {
      std::string where = std::filesystem::exists(dir + "/model.safetensors.index.json")
                              ? dir + "/model.safetensors.index.json"
                              : dir + "/model.safetensors";
      return absl::NotFoundError(absl::StrCat(where, ": tensor ", *BatonToHfName(p.name), " is missing"));
    }
  }
  if (tied && files.count("lm_head.weight")) {
    BATON_ASSIGN_OR_RETURN(const SafetensorsFile* f, file_of(files["lm_head.weight"]));
    BATON_ASSIGN_OR_RETURN(Tensor head, ReadFloatTensor(*f, "lm_head.weight"));
    if (!SameBits(head, model.FindParam("embed")->value)) {
      return Bad(f->path(), ": lm_head.weight differs from model.embed_tokens.weight but ",
                 "tie_word_embeddings is true");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Model> LoadHfModel(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  BATON_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(config_path));
  BATON_ASSIGN_OR_RETURN(HfConfig config, ParseHfConfig(text, config_path));
  BATON_ASSIGN_OR_RETURN(Model model, Model::Create(config.model, DType::kF32));
  BATON_RETURN_IF_ERROR(ReadHfWeights(dir, model));
  return model;
}

// ---- writing

absl::Status WriteHfModel(const std::string& dir, const Model& model, const HfExportOptions& o) {
  namespace fs = std::filesystem;
  if (o.dtype != "F32" && o.dtype != "BF16") {
    return Bad("export dtype \"", o.dtype, "\" is not supported (expected F32 or BF16)");
  }
  if (o.max_shard_bytes == 0) return Bad("max_shard_bytes must be > 0");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));

  // Greedy shards in parameter order, as transformers' shard_checkpoint does.
  const uint64_t elem_bytes = o.dtype == "BF16" ? 2 : 4;
  std::vector<std::vector<SafetensorsTensor>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const Param& p : model.params()) {
    std::optional<std::string> hf = BatonToHfName(p.name);
    BATON_CHECK_MSG(hf.has_value(), p.name.c_str());
    uint64_t bytes = static_cast<uint64_t>(p.value.numel()) * elem_bytes;
    if (!shards.back().empty() && shard_bytes + bytes > o.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back({*hf, p.value, o.dtype});
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  std::set<std::string> written;
  if (shards.size() == 1) {
    BATON_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", shards[0], metadata));
    written.insert("model.safetensors");
  } else {
    Json weight_map = Json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      BATON_RETURN_IF_ERROR(WriteSafetensors(dir + "/" + name, shards[i], metadata));
      for (const SafetensorsTensor& t : shards[i]) weight_map[t.name] = name;
      written.insert(name);
    }
    Json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    BATON_RETURN_IF_ERROR(WriteTextAtomic(dir + "/model.safetensors.index.json", index.dump(2) + "\n"));
    written.insert("model.safetensors.index.json");
  }
  const char* torch_dtype = o.dtype == "BF16" ? "bfloat16" : "float32";
  BATON_RETURN_IF_ERROR(WriteTextAtomic(
      dir + "/config.json", HfConfigJson(model.config(), o.max_position_embeddings, o.bos_token_id,
                                         o.eos_token_id, torch_dtype)));
  BATON_RETURN_IF_ERROR(WriteTextAtomic(dir + "/generation_config.json",
                                        HfGenerationConfigJson(o.bos_token_id, o.eos_token_id)));

  // Stale weights from an earlier export would shadow or mix with these.
  static const std::regex kWeightFile(R"(model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)");
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (std::regex_match(name, kWeightFile) && !written.count(name)) {
      fs::remove(e.path(), ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot remove stale ", e.path().string(), ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace baton
