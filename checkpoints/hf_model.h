// Hugging Face Llama/Qwen2 checkpoints <-> baton models: config.json <->
// ModelConfig, HF tensor names <-> baton parameter names, and reading and
// writing a model directory (model.safetensors, or model-0000k-of-0000n
// shards with model.safetensors.index.json). `baton import` / `baton export`
// (launcher/hf_commands.cc) and the parity check (scripts/hf_parity.py) are
// built on it. Invariants: the mapping is 1:1 with no transposition or
// permutation (our RoPE is HF's rotate_half layout; q/k rows keep their
// order), every tensor is checked against the shape Model::Create gives,
// and anything we cannot represent exactly (rope scaling other than linear
// and llama3, o_proj/MLP bias, sliding windows, head_dim != hidden/heads) is
// refused with one line naming the file and key, never silently approximated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/model.h"
#include "runtime/model_config.h"

namespace baton {

inline constexpr char kHfLlamaArchitecture[] = "LlamaForCausalLM";
inline constexpr char kHfQwen2Architecture[] = "Qwen2ForCausalLM";

// What config.json says beyond ModelConfig.
struct HfConfig {
  ModelConfig model;
  std::string architecture;              // kHfLlamaArchitecture or kHfQwen2Architecture
  int64_t max_position_embeddings = 0;   // 0 = not given
  std::optional<int64_t> bos_token_id, eos_token_id;  // absent or null in the file: nullopt
};

// Parses config.json text; `path` only names it in errors. Defaults as HF's
// config classes: num_key_value_heads = num_attention_heads, rope_theta =
// 10000, rms_norm_eps = 1e-6, tie_word_embeddings = false. Reads rope_theta
// from the top level (transformers 4) or rope_parameters (transformers 5),
// and RoPE scaling of type default, linear or llama3 from rope_scaling (4)
// or rope_parameters (5); llama3 without original_max_position_embeddings
// takes max_position_embeddings, as transformers does. Other types (yarn,
// dynamic, longrope, ...) are refused with the type named.
// Qwen2 has q/k/v biases; Llama has none (attention_bias = true would also
// put a bias on o_proj, which baton's model lacks: refused).
absl::StatusOr<HfConfig> ParseHfConfig(std::string_view json_text, std::string_view path);

// "LlamaForCausalLM", or "Qwen2ForCausalLM" for a model with q/k/v biases.
const char* HfArchitectureFor(const ModelConfig& m);

// config.json for `m` (keys sorted, 2-space indent): architectures,
// model_type, sizes, rope_theta, rope_scaling (transformers 4 spelling,
// only when m has scaling), rms_norm_eps, tie_word_embeddings, and the
// given max_position_embeddings, token ids and torch_dtype ("float32" or
// "bfloat16").
std::string HfConfigJson(const ModelConfig& m, int64_t max_position_embeddings, int64_t bos_token_id,
                         int64_t eos_token_id, std::string_view torch_dtype);

// generation_config.json with the given special token ids.
std::string HfGenerationConfigJson(int64_t bos_token_id, int64_t eos_token_id);

// Name mapping, purely by pattern (no config needed):
//   embed <-> model.embed_tokens.weight, final_norm <-> model.norm.weight,
//   lm_head <-> lm_head.weight, layers.N.attn_norm <-> model.layers.N.input_layernorm.weight,
//   layers.N.attn.{wq,wk,wv,wo} <-> model.layers.N.self_attn.{q,k,v,o}_proj.weight,
//   layers.N.attn.{bq,bk,bv} <-> model.layers.N.self_attn.{q,k,v}_proj.bias,
//   layers.N.mlp_norm <-> model.layers.N.post_attention_layernorm.weight,
//   layers.N.mlp.{w_gate,w_up,w_down} <-> model.layers.N.mlp.{gate,up,down}_proj.weight.
// nullopt for a name outside the pattern.
std::optional<std::string> BatonToHfName(std::string_view baton_name);
std::optional<std::string> HfToBatonName(std::string_view hf_name);

// Reads dir/config.json and the weights (dir/model.safetensors, or the
// shards dir/model.safetensors.index.json names) into a new f32 model.
// F32/F16/BF16/F64 tensors widen to f32. Errors name the file and tensor:
// a missing tensor, an unexpected one, a wrong shape, a non-float dtype.
// A tied model may carry lm_head.weight only if it equals the embedding;
// rotary_emb.inv_freq buffers (old checkpoints) are skipped.
absl::StatusOr<Model> LoadHfModel(const std::string& dir);

// Same, for the weights only, into an existing model of the right config.
absl::Status ReadHfWeights(const std::string& dir, Model& model);

struct HfExportOptions {
  std::string dtype = "F32";                   // "F32" or "BF16" (round to nearest even)
  uint64_t max_shard_bytes = 2'000'000'000;    // above this total, shards of at most this size (a lone larger tensor gets its own)
  int64_t max_position_embeddings = 2048;
  int64_t bos_token_id = 256, eos_token_id = 257;  // the byte tokenizer's BOS/EOS
};

// Writes model.safetensors (or shards + index), config.json and
// generation_config.json into `dir` (created if needed). Each file is
// written atomically; model*.safetensors files and an index left in `dir`
// by an earlier export that this one does not rewrite are removed, so
// from_pretrained never picks up stale weights.
absl::Status WriteHfModel(const std::string& dir, const Model& model, const HfExportOptions& options);

}  // namespace baton
