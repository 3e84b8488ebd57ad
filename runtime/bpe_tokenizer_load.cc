// Reading tokenizer.json into BpeTokenizer (bpe_tokenizer.h). Every field
// that changes the ids HF would produce is either implemented or refused
// with an InvalidArgument naming it: silently ignoring, say, a dropout or
// an unknown regex would give a tokenizer that disagrees with HF.

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "nlohmann/json.hpp"
#include "runtime/bpe_tokenizer.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

using Json = nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", field, ": ", why));
}

// A string field that must be absent, null or one of `allowed` values.
bool IsNullOr(const Json& obj, const char* key, std::initializer_list<Json> allowed) {
  if (!obj.contains(key) || obj[key].is_null()) return true;
  for (const Json& a : allowed) {
    if (obj[key] == a) return true;
  }
  return false;
}

bool GetBool(const Json& obj, const char* key, bool fallback) {
  return obj.contains(key) && obj[key].is_boolean() ? obj[key].get<bool>() : fallback;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("cannot read tokenizer file ", text.status().message()));
  }
  absl::StatusOr<std::unique_ptr<BpeTokenizer>> t = FromJson(*text);
  if (!t.ok()) {
    return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  }
  return t;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(std::string_view text) {
  Json json = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Bad("document", "not valid JSON");
  if (!json.is_object()) return Bad("document", "not a JSON object");
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  try {
    BATON_RETURN_IF_ERROR(t->ParseModel(json));
    BATON_RETURN_IF_ERROR(t->ParseAddedTokens(json));
    BATON_RETURN_IF_ERROR(t->ParsePreTokenizer(json));
    BATON_RETURN_IF_ERROR(t->FindBosEos(json));
  } catch (const Json::exception& e) {  // a field of the wrong JSON type
    return Bad("document", e.what());
  }
  return t;
}

absl::Status BpeTokenizer::ParseModel(const Json& json) {
  if (!json.contains("model") || !json["model"].is_object()) return Bad("model", "missing");
  const Json& model = json["model"];
  if (model.contains("type") && model["type"] != "BPE") {
    return Bad("model.type", absl::StrCat(model["type"].dump(), " is not supported (only \"BPE\")"));
  }
  if (!IsNullOr(model, "dropout", {0.0})) return Bad("model.dropout", "BPE dropout is not supported");
  if (!IsNullOr(model, "continuing_subword_prefix", {""}) ||
      !IsNullOr(model, "end_of_word_suffix", {""})) {
    return Bad("model", "continuing_subword_prefix/end_of_word_suffix are not supported");
  }
  if (GetBool(model, "byte_fallback", false)) return Bad("model.byte_fallback", "not supported");
  ignore_merges_ = GetBool(model, "ignore_merges", false);
  fuse_unk_ = GetBool(model, "fuse_unk", false);

  if (!model.contains("vocab") || !model["vocab"].is_object()) return Bad("model.vocab", "missing");
  int64_t max_id = -1;
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 30)) {
      return Bad("model.vocab", absl::StrCat("bad id ", id.dump(), " for \"", token, "\""));
    }
    max_id = std::max(max_id, id.get<int64_t>());
  }
  id_to_token_.assign(max_id + 1, std::string());
  for (const auto& [token, id] : model["vocab"].items()) {
    id_to_token_[id.get<int32_t>()] = token;
    token_to_id_[token] = id.get<int32_t>();
  }
  byte_id_.assign(256, -1);
  const auto& alphabet = ByteLevelAlphabet();
  for (int b = 0; b < 256; ++b) {
    if (auto it = token_to_id_.find(alphabet[b]); it != token_to_id_.end()) byte_id_[b] = it->second;
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    auto it = token_to_id_.find(unk);
    if (it == token_to_id_.end()) return Bad("model.unk_token", absl::StrCat("\"", unk, "\" is not in the vocab"));
    unk_id_ = it->second;
  }

  if (!model.contains("merges") || !model["merges"].is_array()) return Bad("model.merges", "missing");
  const Json& merges = model["merges"];
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {  // legacy "a b"
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Bad(absl::StrCat("model.merges[", rank, "]"), absl::StrCat("\"", s, "\" is not \"a b\""));
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return Bad(absl::StrCat("model.merges[", rank, "]"), "expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), iab = token_to_id_.find(a + b);
    for (auto [it, tok] : {std::pair{ia, &a}, std::pair{ib, &b}}) {
      if (it == token_to_id_.end()) {
        return Bad(absl::StrCat("model.merges[", rank, "]"), absl::StrCat("\"", *tok, "\" is not in the vocab"));
      }
    }
    if (iab == token_to_id_.end()) {
      return Bad(absl::StrCat("model.merges[", rank, "]"), absl::StrCat("merged \"", a + b, "\" is not in the vocab"));
    }
    const uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    merges_[key] = {static_cast<int32_t>(rank), iab->second};
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParseAddedTokens(const Json& json) {
  if (json.contains("normalizer") && !json["normalizer"].is_null()) {
    const Json& n = json["normalizer"];
    const Json* nfc = &n;
    if (n.value("type", "") == "Sequence" && n.contains("normalizers") && n["normalizers"].size() <= 1) {
      nfc = n["normalizers"].empty() ? nullptr : &n["normalizers"][0];
    }
    if (nfc != nullptr && nfc->value("type", "") != "NFC") {
      return Bad("normalizer", absl::StrCat(n.dump(), " is not supported (only null or NFC)"));
    }
    nfc_ = nfc != nullptr;
  }
  is_added_.assign(id_to_token_.size(), 0);
  is_special_.assign(id_to_token_.size(), 0);
  if (!json.contains("added_tokens") || json["added_tokens"].is_null()) return absl::OkStatus();
  if (!json["added_tokens"].is_array()) return Bad("added_tokens", "not an array");
  for (const Json& a : json["added_tokens"]) {
    AddedToken t;
    if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
        !a["content"].is_string() || a["content"].get<std::string>().empty()) {
      return Bad("added_tokens", absl::StrCat(a.dump(), " needs an integer id and a non-empty content"));
    }
    t.content = a["content"].get<std::string>();
    const int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id >= (1 << 30)) return Bad("added_tokens", absl::StrCat("bad id ", id));
    t.id = static_cast<int32_t>(id);
    t.lstrip = GetBool(a, "lstrip", false);
    t.rstrip = GetBool(a, "rstrip", false);
    t.single_word = GetBool(a, "single_word", false);
    t.special = GetBool(a, "special", false);
    if (t.id >= static_cast<int32_t>(id_to_token_.size())) {
      id_to_token_.resize(t.id + 1);
      is_added_.resize(t.id + 1, 0);
      is_special_.resize(t.id + 1, 0);
    }
    id_to_token_[t.id] = t.content;
    is_added_[t.id] = 1;
    is_special_[t.id] = t.special;
    added_.push_back(std::move(t));
  }
  added_by_first_byte_.assign(256, {});
  for (size_t i = 0; i < added_.size(); ++i) {
    added_by_first_byte_[static_cast<uint8_t>(added_[i].content[0])].push_back(static_cast<int32_t>(i));
  }
  for (auto& list : added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int32_t x, int32_t y) {
      return added_[x].content.size() > added_[y].content.size();
    });
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::ParsePreTokenizer(const Json& json) {
  if (!json.contains("pre_tokenizer") || json["pre_tokenizer"].is_null()) {
    return Bad("pre_tokenizer", "missing (only byte-level BPE is supported: ByteLevel is required)");
  }
  const Json& pre = json["pre_tokenizer"];
  std::vector<const Json*> steps;
  if (pre.value("type", "") == "Sequence") {
    if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array()) {
      return Bad("pre_tokenizer.pretokenizers", "missing");
    }
    for (const Json& s : pre["pretokenizers"]) steps.push_back(&s);
  } else {
    steps.push_back(&pre);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const Json& s = *steps[i];
    const std::string type = s.value("type", "");
    const std::string field = steps.size() == 1 ? "pre_tokenizer" : absl::StrCat("pre_tokenizer.pretokenizers[", i, "]");
    PreStep step;
    if (type == "ByteLevel") {
      step.byte_level = true;
      step.add_prefix_space = GetBool(s, "add_prefix_space", true);
      step.use_regex = GetBool(s, "use_regex", true);
      if (i + 1 != steps.size()) return Bad(field, "ByteLevel must be the last pre-tokenizer");
    } else if (type == "Split") {
      if (!s.contains("pattern") || !s["pattern"].contains("Regex") || !s["pattern"]["Regex"].is_string()) {
        return Bad(field, "only a {\"Regex\": ...} pattern is supported");
      }
      if (s.value("behavior", "") != "Isolated" || GetBool(s, "invert", false)) {
        return Bad(field, "only behavior \"Isolated\" with invert false is supported");
      }
      absl::StatusOr<SplitRegex> regex = SplitRegexFromPattern(s["pattern"]["Regex"].get<std::string>());
      if (!regex.ok()) return Bad(absl::StrCat(field, ".pattern"), regex.status().message());
      step.regex = *regex;
    } else {
      return Bad(field, absl::StrCat("pre-tokenizer type \"", type, "\" is not supported (ByteLevel, Split, Sequence)"));
    }
    pre_steps_.push_back(step);
  }
  if (pre_steps_.empty() || !pre_steps_.back().byte_level) {
    return Bad("pre_tokenizer", "no ByteLevel step (only byte-level BPE is supported)");
  }
  if (json.contains("decoder") && !json["decoder"].is_null() && json["decoder"].value("type", "") != "ByteLevel") {
    return Bad("decoder", absl::StrCat(json["decoder"].dump(), " is not supported (only ByteLevel)"));
  }
  return absl::OkStatus();
}

absl::Status BpeTokenizer::FindBosEos(const Json& json) {
  // A TemplateProcessing names the specials around $A: BOS before, EOS after.
  std::vector<const Json*> processors;
  if (json.contains("post_processor") && json["post_processor"].is_object()) {
    const Json& p = json["post_processor"];
    if (p.value("type", "") == "Sequence" && p.contains("processors")) {
      for (const Json& q : p["processors"]) processors.push_back(&q);
    } else {
      processors.push_back(&p);
    }
  }
  for (const Json* p : processors) {
    const std::string type = p->value("type", "");
    if (type == "TemplateProcessing" && p->contains("single") && (*p)["single"].is_array()) {
      bool seen_a = false;
      for (const Json& piece : (*p)["single"]) {
        if (piece.contains("Sequence")) seen_a = true;
        if (!piece.contains("SpecialToken")) continue;
        const std::string name = piece["SpecialToken"].value("id", "");
        auto id = TokenId(name);
        if (!id) return Bad("post_processor", absl::StrCat("special token \"", name, "\" is not in the vocab"));
        (seen_a ? eos_id_ : bos_id_) = *id;
      }
    } else if ((type == "RobertaProcessing" || type == "BertProcessing") && p->contains("cls") && p->contains("sep")) {
      bos_id_ = (*p)["cls"][1].get<int32_t>();
      eos_id_ = (*p)["sep"][1].get<int32_t>();
    }
  }
  auto first_of = [&](std::initializer_list<const char*> names) -> int32_t {
    for (const char* n : names) {
      if (auto id = TokenId(n)) return *id;
    }
    return -1;
  };
  if (bos_id_ < 0) bos_id_ = first_of({"<|begin_of_text|>", "<s>", "<|startoftext|>", "<|endoftext|>"});
  if (eos_id_ < 0) eos_id_ = first_of({"<|end_of_text|>", "</s>", "<|endoftext|>"});
  if (bos_id_ < 0 || eos_id_ < 0) {
    return Bad("added_tokens", absl::StrCat("no ", bos_id_ < 0 ? "BOS" : "EOS",
                                            " token: the post_processor names none and none of "
                                            "<|begin_of_text|>, <s>, <|end_of_text|>, </s>, <|endoftext|> exists"));
  }
  return absl::OkStatus();
}

}  // namespace baton
