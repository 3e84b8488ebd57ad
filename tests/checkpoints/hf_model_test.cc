// Tests of the Hugging Face model directory mapping (checkpoints/hf_model.h):
// name mapping both ways for every parameter, config.json parsing of Llama
// and Qwen2 examples (transformers 4 and 5 spellings, defaults), one-line
// errors for what we cannot import, and write -> read round trips (f32 bit
// for bit, sharded, bf16 = round-to-nearest-even of the f32 weights).
// No Python: scripts/hf_parity.py checks the same files against transformers.
#include "checkpoints/hf_model.h"

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "checkpoints/safetensors.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

MATCHER_P2(StatusIs, code, msg_matcher, "") {
  return arg.code() == code && ::testing::ExplainMatchResult(msg_matcher, std::string(arg.message()), result_listener);
}

std::string ReadFile(const std::string& path) { return ReadWholeFile(path).value_or("<unreadable>"); }
void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

ModelConfig SmallConfig(bool tied, bool bias) {
  ModelConfig m;
  m.layers = 2;
  m.dim = 16;
  m.heads = 4;
  m.kv_heads = 2;
  m.ffn_dim = 24;
  m.vocab_size = 19;
  m.rope_theta = 500000.0;
  m.norm_eps = 1e-5f;
  m.tie_embeddings = tied;
  m.qkv_bias = bias;
  return m;
}

// A model whose every element differs (norms and biases too, so a swapped or
// dropped tensor shows).
Model RandomModel(const ModelConfig& m, uint64_t seed) {
  Model model = *Model::Create(m, DType::kF32);
  model.Init(seed);
  float k = 0.5f;
  for (Param& p : model.params()) {
    float* v = p.value.data<float>();
    for (int64_t i = 0; i < p.value.numel(); ++i) v[i] += k * std::sin(0.37f * static_cast<float>(i) + k);
    k += 0.01f;
  }
  return model;
}

void ExpectSameBits(const Model& a, const Model& b) {
  ASSERT_EQ(a.params().size(), b.params().size());
  for (size_t i = 0; i < a.params().size(); ++i) {
    const Tensor& x = a.params()[i].value;
    const Tensor& y = b.params()[i].value;
    ASSERT_EQ(x.shape(), y.shape()) << a.params()[i].name;
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << a.params()[i].name;
  }
}

class HfModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "hf_model_test.XXXXXX";
    BATON_CHECK(mkdtemp(dir_.data()) != nullptr);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

// ---- names

TEST(HfNames, EveryParameterMapsBothWays) {
  for (bool tied : {true, false}) {
    for (bool bias : {true, false}) {
      Model model = *Model::Create(SmallConfig(tied, bias), DType::kF32);
      for (const Param& p : model.params()) {
        std::optional<std::string> hf = BatonToHfName(p.name);
        ASSERT_TRUE(hf.has_value()) << p.name;
        EXPECT_EQ(HfToBatonName(*hf), p.name);
      }
    }
  }
  const std::pair<const char*, const char*> expected[] = {
      {"embed", "model.embed_tokens.weight"},
      {"final_norm", "model.norm.weight"},
      {"lm_head", "lm_head.weight"},
      {"layers.1.attn_norm", "model.layers.1.input_layernorm.weight"},
      {"layers.1.attn.wq", "model.layers.1.self_attn.q_proj.weight"},
      {"layers.1.attn.wk", "model.layers.1.self_attn.k_proj.weight"},
      {"layers.1.attn.wv", "model.layers.1.self_attn.v_proj.weight"},
      {"layers.1.attn.bq", "model.layers.1.self_attn.q_proj.bias"},
      {"layers.1.attn.bk", "model.layers.1.self_attn.k_proj.bias"},
      {"layers.1.attn.bv", "model.layers.1.self_attn.v_proj.bias"},
      {"layers.1.attn.wo", "model.layers.1.self_attn.o_proj.weight"},
      {"layers.1.mlp_norm", "model.layers.1.post_attention_layernorm.weight"},
      {"layers.1.mlp.w_gate", "model.layers.1.mlp.gate_proj.weight"},
      {"layers.1.mlp.w_up", "model.layers.1.mlp.up_proj.weight"},
      {"layers.12.mlp.w_down", "model.layers.12.mlp.down_proj.weight"},
  };
  for (auto [baton, hf] : expected) {
    EXPECT_EQ(BatonToHfName(baton), hf);
    EXPECT_EQ(HfToBatonName(hf), baton);
  }
}

TEST(HfNames, RejectsNamesOutsideThePattern) {
  for (const char* hf : {"model.layers.0.self_attn.o_proj.bias", "model.layers.01.mlp.up_proj.weight",
                         "model.layers.x.mlp.up_proj.weight", "model.layers..mlp.up_proj.weight",
                         "model.layers.0.self_attn.rotary_emb.inv_freq", "embed_tokens.weight", "lm_head.bias"}) {
    EXPECT_EQ(HfToBatonName(hf), std::nullopt) << hf;
  }
  for (const char* baton : {"layers.0.attn.bo", "layers.-1.attn.wq", "layers.0", "embed.weight", "layers.0.attn.wq.x"}) {
    EXPECT_EQ(BatonToHfName(baton), std::nullopt) << baton;
  }
}

// ---- config.json

constexpr char kLlamaV4[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
  "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
  "intermediate_size": 176, "vocab_size": 32000, "rope_theta": 500000.0, "rope_scaling": null,
  "rms_norm_eps": 1e-05, "tie_word_embeddings": true, "attention_bias": false, "mlp_bias": false,
  "hidden_act": "silu", "head_dim": 8, "max_position_embeddings": 8192,
  "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16"})";

constexpr char kQwen2V5[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 96,
  "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
  "intermediate_size": 200, "vocab_size": 1000, "rms_norm_eps": 1e-06,
  "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
  "use_sliding_window": false, "sliding_window": null, "tie_word_embeddings": false})";

TEST(HfConfigParse, LlamaTransformers4) {
  absl::StatusOr<HfConfig> c = ParseHfConfig(kLlamaV4, "llama/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->model.dim, 64);
  EXPECT_EQ(c->model.layers, 3);
  EXPECT_EQ(c->model.heads, 8);
  EXPECT_EQ(c->model.kv_heads, 2);
  EXPECT_EQ(c->model.ffn_dim, 176);
  EXPECT_EQ(c->model.vocab_size, 32000);
  EXPECT_EQ(c->model.rope_theta, 500000.0);
  EXPECT_EQ(c->model.norm_eps, 1e-5f);
  EXPECT_TRUE(c->model.tie_embeddings);
  EXPECT_FALSE(c->model.qkv_bias);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_id, 128001);
}

TEST(HfConfigParse, Qwen2Transformers5) {
  absl::StatusOr<HfConfig> c = ParseHfConfig(kQwen2V5, "qwen/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c->model.dim, 96);
  EXPECT_EQ(c->model.heads, 6);
  EXPECT_EQ(c->model.kv_heads, 2);
  EXPECT_EQ(c->model.rope_theta, 1000000.0);
  EXPECT_EQ(c->model.norm_eps, 1e-6f);
  EXPECT_FALSE(c->model.tie_embeddings);
  EXPECT_TRUE(c->model.qkv_bias);
  EXPECT_EQ(c->bos_token_id, std::nullopt);
}

TEST(HfConfigParse, Defaults) {
  absl::StatusOr<HfConfig> c = ParseHfConfig(
      R"({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
          "intermediate_size": 48, "vocab_size": 258})",
      "c.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->model.kv_heads, 4);  // = num_attention_heads
  EXPECT_EQ(c->model.rope_theta, 10000.0);
  EXPECT_EQ(c->model.norm_eps, 1e-6f);
  EXPECT_FALSE(c->model.tie_embeddings);
  EXPECT_EQ(c->max_position_embeddings, 0);
}

TEST(HfConfigParse, OurConfigJsonParsesBack) {
  for (bool bias : {false, true}) {
    ModelConfig m = SmallConfig(/*tied=*/!bias, bias);
    std::string json = HfConfigJson(m, 4096, 256, 257, "float32");
    EXPECT_THAT(json, HasSubstr(bias ? "\"Qwen2ForCausalLM\"" : "\"LlamaForCausalLM\""));
    EXPECT_THAT(json, HasSubstr("\"rms_norm_eps\": 1e-05"));
    absl::StatusOr<HfConfig> c = ParseHfConfig(json, "ours");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->model.layers, m.layers);
    EXPECT_EQ(c->model.dim, m.dim);
    EXPECT_EQ(c->model.heads, m.heads);
    EXPECT_EQ(c->model.kv_heads, m.kv_heads);
    EXPECT_EQ(c->model.ffn_dim, m.ffn_dim);
    EXPECT_EQ(c->model.vocab_size, m.vocab_size);
    EXPECT_EQ(c->model.rope_theta, m.rope_theta);
    EXPECT_EQ(c->model.norm_eps, m.norm_eps);
    EXPECT_EQ(c->model.tie_embeddings, m.tie_embeddings);
    EXPECT_EQ(c->model.qkv_bias, m.qkv_bias);
    EXPECT_EQ(c->max_position_embeddings, 4096);
    EXPECT_EQ(c->eos_token_id, 257);
  }
}

TEST(HfConfigParse, Errors) {
  const std::string base = R"("hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                              "intermediate_size": 48, "vocab_size": 258)";
  auto with = [&](const std::string& extra) { return absl::StrCat("{", base, ", ", extra, "}"); };
  const std::pair<std::string, std::string> cases[] = {
      {with(R"("architectures": ["MistralForCausalLM"])"),
       "d/config.json: architecture MistralForCausalLM is not supported (expected LlamaForCausalLM or "
       "Qwen2ForCausalLM)"},
      {with(R"("model_type": "gemma")"), "architecture model_type \"gemma\" is not supported"},
      {with(R"("model_type": "llama", "rope_scaling": {"type": "dynamic", "factor": 2.0})"),
       "d/config.json: rope_scaling.type=\"dynamic\" is not supported yet (baton supports default, linear and llama3)"},
      {with(R"("model_type": "llama", "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0})"),
       "rope_parameters.rope_type=\"yarn\" is not supported yet"},
      {with(R"("model_type": "llama", "head_dim": 16)"),
       "d/config.json: head_dim=16 != hidden_size/num_attention_heads=8 (not supported yet)"},
      {with(R"("model_type": "llama", "attention_bias": true)"), "attention_bias=true is not supported yet"},
      {with(R"("model_type": "qwen2", "use_sliding_window": true)"), "use_sliding_window=true is not supported yet"},
      {with(R"("model_type": "llama", "hidden_act": "gelu")"), "hidden_act=\"gelu\" is not supported yet"},
      {with(R"("model_type": "llama", "num_key_value_heads": 3)"), "model.kv_heads"},
      {R"({"model_type": "llama", "hidden_size": 32})", "d/config.json: missing key num_hidden_layers"},
      {with(R"("model_type": "llama", "tie_word_embeddings": 1)"), "tie_word_embeddings must be true or false, got 1"},
      {"[1, 2]", "d/config.json: not a JSON object"},
  };
  for (const auto& [json, msg] : cases) {
    EXPECT_THAT(ParseHfConfig(json, "d/config.json").status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(msg)))
        << json;
  }
}

// ---- directories

TEST_F(HfModelTest, RoundTripIsBitIdentical) {
  for (bool tied : {true, false}) {
    for (bool bias : {false, true}) {
      ModelConfig m = SmallConfig(tied, bias);
      Model model = RandomModel(m, 11);
      const std::string dir = absl::StrCat(dir_, "/rt_", tied, bias);
      ASSERT_TRUE(WriteHfModel(dir, model, {}).ok());
      EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
      EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
      absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(dir + "/model.safetensors");
      ASSERT_TRUE(f.ok());
      EXPECT_EQ(f->entries().size(), model.params().size());
      EXPECT_EQ(f->Find("lm_head.weight") != nullptr, !tied);
      EXPECT_EQ(f->metadata().at("format"), "pt");
      EXPECT_THAT(ReadFile(dir + "/generation_config.json"), HasSubstr("\"eos_token_id\": 257"));
      absl::StatusOr<Model> back = LoadHfModel(dir);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(back->config().qkv_bias, bias);
      EXPECT_EQ(back->config().tie_embeddings, tied);
      ExpectSameBits(model, *back);
    }
  }
}

TEST_F(HfModelTest, ShardedRoundTripAndStaleFilesRemoved) {
  Model model = RandomModel(SmallConfig(false, true), 5);
  HfExportOptions o;
  o.max_shard_bytes = 3000;  // embed (19·16·4 = 1216 bytes) and lm_head fit; layers spill over
  ASSERT_TRUE(WriteHfModel(dir_, model, o).ok());
  ASSERT_TRUE(fs::exists(dir_ + "/model.safetensors.index.json"));
  std::string index = ReadFile(dir_ + "/model.safetensors.index.json");
  EXPECT_THAT(index, HasSubstr("\"model.embed_tokens.weight\": \"model-00001-of-"));
  EXPECT_THAT(index, HasSubstr("\"total_size\""));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(dir_)) shards += e.path().filename().string().starts_with("model-");
  EXPECT_GT(shards, 2);
  absl::StatusOr<Model> back = LoadHfModel(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameBits(model, *back);

  // One file now: the shards and index of the first export must go.
  ASSERT_TRUE(WriteHfModel(dir_, model, {}).ok());
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_FALSE(e.path().filename().string().starts_with("model-")) << e.path();
  }
  EXPECT_FALSE(fs::exists(dir_ + "/model.safetensors.index.json"));
  back = LoadHfModel(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameBits(model, *back);
}

// bf16 as rounding to nearest even would give, computed here from the bits.
uint16_t RoundToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

TEST_F(HfModelTest, Bf16ExportRoundsToNearestEven) {
  EXPECT_EQ(RoundToBf16(1.0f + 0x1p-8f), 0x3f80);          // tie: stays at even 1.0
  EXPECT_EQ(RoundToBf16(1.0f + 0x1p-8f + 0x1p-9f), 0x3f81);  // above the tie: up
  Model model = RandomModel(SmallConfig(true, true), 3);
  HfExportOptions o;
  o.dtype = "BF16";
  ASSERT_TRUE(WriteHfModel(dir_, model, o).ok());
  EXPECT_THAT(ReadFile(dir_ + "/config.json"), HasSubstr("\"torch_dtype\": \"bfloat16\""));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(dir_ + "/model.safetensors");
  ASSERT_TRUE(f.ok());
  int64_t checked = 0;
  for (const Param& p : model.params()) {
    const SafetensorsEntry* e = f->Find(*BatonToHfName(p.name));
    ASSERT_NE(e, nullptr) << p.name;
    EXPECT_EQ(e->dtype, "BF16");
    absl::Span<const uint8_t> bytes = f->Bytes(*e);
    ASSERT_EQ(bytes.size(), static_cast<size_t>(p.value.numel()) * 2);
    const float* v = p.value.data<float>();
    for (int64_t i = 0; i < p.value.numel(); ++i, ++checked) {
      uint16_t got;
      std::memcpy(&got, bytes.data() + 2 * i, 2);
      ASSERT_EQ(got, RoundToBf16(v[i])) << p.name << "[" << i << "]";
    }
  }
  EXPECT_GT(checked, 1000);
  // And it imports (as f32 widened from bf16).
  absl::StatusOr<Model> back = LoadHfModel(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
}

TEST_F(HfModelTest, DirectoryErrorsNameFileAndTensor) {
  Model model = RandomModel(SmallConfig(false, false), 9);
  ASSERT_TRUE(WriteHfModel(dir_, model, {}).ok());
  const std::string file = dir_ + "/model.safetensors";
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(file);
  ASSERT_TRUE(f.ok());
  std::vector<SafetensorsTensor> tensors;
  for (const SafetensorsEntry& e : f->entries()) tensors.push_back({e.name, *f->ReadAsF32(e.name)});
  auto rewrite = [&](std::vector<SafetensorsTensor> ts) {
    ASSERT_TRUE(WriteSafetensors(file, ts, {{"format", "pt"}}).ok());
  };
  auto without = [&](const std::string& name) {
    std::vector<SafetensorsTensor> ts;
    for (const auto& t : tensors)
      if (t.name != name) ts.push_back(t);
    return ts;
  };

  rewrite(without("model.layers.1.mlp.up_proj.weight"));
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(file + ": tensor model.layers.1.mlp.up_proj.weight is missing")));

  std::vector<SafetensorsTensor> extra = tensors;
  extra.push_back({"model.layers.0.self_attn.o_proj.bias", Tensor::Zeros({16}, DType::kF32)});
  rewrite(extra);
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(file + ": unexpected tensor model.layers.0.self_attn.o_proj.bias")));

  std::vector<SafetensorsTensor> wrong = without("model.layers.0.self_attn.k_proj.weight");
  wrong.push_back({"model.layers.0.self_attn.k_proj.weight", Tensor::Zeros({16, 16}, DType::kF32)});
  rewrite(wrong);
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(file + ": tensor model.layers.0.self_attn.k_proj.weight has shape [16, 16], "
                                        "expected [8, 16]")));

  std::vector<SafetensorsTensor> ints = without("model.norm.weight");
  ints.push_back({"model.norm.weight", Tensor::Zeros({16}, DType::kI32)});
  rewrite(ints);
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tensor model.norm.weight has dtype I32 (expected F32, F16, BF16 or F64)")));

  // Old checkpoints carry rotary buffers: skipped, and the model still loads.
  std::vector<SafetensorsTensor> rotary = tensors;
  rotary.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", Tensor::Zeros({2}, DType::kF32)});
  rewrite(rotary);
  EXPECT_TRUE(LoadHfModel(dir_).ok());

  WriteFile(dir_ + "/config.json", R"({"architectures": ["GPT2LMHeadModel"]})");
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(dir_ + "/config.json: architecture GPT2LMHeadModel is not supported")));

  fs::remove(file);
  ASSERT_TRUE(WriteHfModel(dir_ + "/other", model, {}).ok());
  fs::copy_file(dir_ + "/other/config.json", dir_ + "/config.json", fs::copy_options::overwrite_existing);
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(dir_ + ": no model.safetensors or model.safetensors.index.json")));
  EXPECT_THAT(LoadHfModel(dir_ + "/nothing").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir_ + "/nothing/config.json")));
}

TEST_F(HfModelTest, TiedModelAcceptsOnlyAnEqualLmHead) {
  Model model = RandomModel(SmallConfig(true, false), 2);
  ASSERT_TRUE(WriteHfModel(dir_, model, {}).ok());
  const std::string file = dir_ + "/model.safetensors";
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(file);
  ASSERT_TRUE(f.ok());
  std::vector<SafetensorsTensor> tensors;
  for (const SafetensorsEntry& e : f->entries()) tensors.push_back({e.name, *f->ReadAsF32(e.name)});
  Tensor head = model.FindParam("embed")->value.Clone();
  tensors.push_back({"lm_head.weight", head});
  ASSERT_TRUE(WriteSafetensors(file, tensors, {}).ok());
  absl::StatusOr<Model> back = LoadHfModel(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameBits(model, *back);

  head.data<float>()[7] += 1e-3f;
  ASSERT_TRUE(WriteSafetensors(file, tensors, {}).ok());
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(file + ": lm_head.weight differs from model.embed_tokens.weight")));
}

TEST_F(HfModelTest, IndexNamingAFileOutsideTheDirectoryIsRefused) {
  Model model = RandomModel(SmallConfig(true, false), 4);
  ASSERT_TRUE(WriteHfModel(dir_, model, {}).ok());
  WriteFile(dir_ + "/model.safetensors.index.json",
            R"({"metadata": {}, "weight_map": {"model.embed_tokens.weight": "../x.safetensors"}})");
  EXPECT_THAT(LoadHfModel(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a file name in")));
}

}  // namespace
}  // namespace baton
