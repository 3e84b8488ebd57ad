// RoPE scaling in Hugging Face config.json (checkpoints/hf_model.h):
// llama3 and linear in transformers 4's rope_scaling and 5's
// rope_parameters spellings map onto ModelConfig::rope_scaling exactly;
// export writes them back in the spelling both versions read; every other
// scaling type, and malformed llama3 dicts, get one line naming the key.
// scripts/hf_parity.py checks the same against transformers' own RoPE.
#include <unistd.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "checkpoints/hf_model.h"

namespace baton {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Type = RopeScaling::Type;

// Llama 3.1 8B's rope settings, smaller sizes.
constexpr char kLlama31V4[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "intermediate_size": 96, "vocab_size": 128256, "max_position_embeddings": 131072,
  "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rms_norm_eps": 1e-05, "tie_word_embeddings": false})";

// The same as transformers 5 saves it (Llama 3.2 uses factor 32).
constexpr char kLlama32V5[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96, "vocab_size": 258,
  "max_position_embeddings": 131072,
  "rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
                      "rope_type": "llama3"},
  "tie_word_embeddings": true})";

std::string Base(const std::string& extra) {
  return absl::StrCat(R"({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 4, "intermediate_size": 48, "vocab_size": 258, )", extra, "}");
}

void ExpectLlama3(const absl::StatusOr<HfConfig>& c, double factor) {
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.rope_theta, 500000.0);
  EXPECT_EQ(c->model.rope_scaling.type, Type::kLlama3);
  EXPECT_EQ(c->model.rope_scaling.factor, factor);
  EXPECT_EQ(c->model.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c->model.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->model.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c->max_position_embeddings, 131072);
}

TEST(HfRopeConfig, Llama3Transformers4) { ExpectLlama3(ParseHfConfig(kLlama31V4, "c.json"), 8.0); }

TEST(HfRopeConfig, Llama3Transformers5) { ExpectLlama3(ParseHfConfig(kLlama32V5, "c.json"), 32.0); }

TEST(HfRopeConfig, LinearAndDefaultSpellings) {
  // transformers < 4.45 wrote "type"; rope_theta stays at the top level.
  absl::StatusOr<HfConfig> c = ParseHfConfig(Base(R"("rope_theta": 20000.0, "rope_scaling": {"type": "linear", "factor": 2.0})"), "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.rope_scaling.type, Type::kLinear);
  EXPECT_EQ(c->model.rope_scaling.factor, 2.0);
  EXPECT_EQ(c->model.rope_theta, 20000.0);
  c = ParseHfConfig(Base(R"("rope_parameters": {"rope_type": "linear", "factor": 4, "rope_theta": 1e6})"), "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.rope_scaling.type, Type::kLinear);
  EXPECT_EQ(c->model.rope_scaling.factor, 4.0);
  EXPECT_EQ(c->model.rope_theta, 1e6);
  for (const char* none : {R"("rope_scaling": null)", R"("rope_scaling": {"rope_type": "default"})",
                           R"("rope_parameters": {"rope_type": "default", "rope_theta": 10000.0})", R"("x": 0)"}) {
    c = ParseHfConfig(Base(none), "c");
    ASSERT_TRUE(c.ok()) << c.status() << none;
    EXPECT_EQ(c->model.rope_scaling.type, Type::kNone) << none;
  }
}

TEST(HfRopeConfig, Llama3OriginalContextFallsBackToMaxPositionEmbeddings) {
  absl::StatusOr<HfConfig> c = ParseHfConfig(
      Base(R"("max_position_embeddings": 4096, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0})"),
      "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.rope_scaling.original_max_position, 4096);
}

// rope_scaling wins over rope_parameters, as in transformers 5.
TEST(HfRopeConfig, RopeScalingTakesPrecedence) {
  absl::StatusOr<HfConfig> c = ParseHfConfig(
      Base(R"("rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
              "rope_scaling": {"rope_type": "linear", "factor": 3.0})"),
      "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.rope_scaling.type, Type::kLinear);
  EXPECT_EQ(c->model.rope_scaling.factor, 3.0);
}

TEST(HfRopeConfig, ExportWritesItBack) {
  absl::StatusOr<HfConfig> in = ParseHfConfig(kLlama31V4, "c.json");
  ASSERT_TRUE(in.ok()) << in.status();
  const std::string json = HfConfigJson(in->model, 131072, 128000, 128001, "bfloat16");
  EXPECT_THAT(json, HasSubstr(R"("rope_scaling": {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  })"));
  ExpectLlama3(ParseHfConfig(json, "ours"), 8.0);

  ModelConfig m = in->model;
  m.rope_scaling = {};
  m.rope_scaling.type = Type::kLinear;
  m.rope_scaling.factor = 2.5;
  const std::string linear = HfConfigJson(m, 2048, 1, 2, "float32");
  EXPECT_THAT(linear, HasSubstr(R"("rope_scaling": {
    "factor": 2.5,
    "rope_type": "linear"
  })"));
  absl::StatusOr<HfConfig> back = ParseHfConfig(linear, "ours");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model.rope_scaling.type, Type::kLinear);
  EXPECT_EQ(back->model.rope_scaling.factor, 2.5);

  m.rope_scaling = {};  // no scaling: no key, as before
  EXPECT_THAT(HfConfigJson(m, 2048, 1, 2, "float32"), Not(HasSubstr("rope_scaling")));
}

TEST(HfRopeConfig, ExportedDirectoryLoadsWithItsScaling) {
  absl::StatusOr<HfConfig> in = ParseHfConfig(kLlama32V5, "c.json");
  ASSERT_TRUE(in.ok()) << in.status();
  in->model.vocab_size = 19;
  absl::StatusOr<Model> model = Model::Create(in->model, DType::kF32);
  ASSERT_TRUE(model.ok()) << model.status();
  model->Init(3);
  const std::string dir = absl::StrCat(::testing::TempDir(), "/hf_rope_config_test_", ::getpid());
  ASSERT_TRUE(WriteHfModel(dir, *model, {}).ok());
  absl::StatusOr<Model> back = LoadHfModel(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->config().rope_scaling.type, Type::kLlama3);
  EXPECT_EQ(back->config().rope_scaling.factor, 32.0);
  EXPECT_EQ(back->config().rope_scaling.original_max_position, 8192);
  EXPECT_EQ(back->config().rope_theta, 500000.0);
  std::filesystem::remove_all(dir);
}

TEST(HfRopeConfig, UnsupportedOrMalformedScalingIsOneLine) {
  const std::pair<std::string, std::string> cases[] = {
      {R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})",
       "c.json: rope_scaling.rope_type=\"yarn\" is not supported yet (baton supports default, linear and llama3)"},
      {R"("rope_scaling": {"type": "dynamic", "factor": 2.0})", "c.json: rope_scaling.type=\"dynamic\" is not supported yet"},
      {R"("rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0]})",
       "c.json: rope_parameters.rope_type=\"longrope\" is not supported yet"},
      {R"("rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0})",
       "c.json: rope_parameters.rope_type=\"yarn\" is not supported yet"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0})", "c.json: rope_scaling.low_freq_factor is missing"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192})",
       "c.json: rope_scaling.high_freq_factor=4 must be greater than low_freq_factor=4"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0})",
       "c.json: rope_scaling.original_max_position_embeddings is missing (and no max_position_embeddings"},
      {R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192.5})",
       "c.json: rope_scaling.original_max_position_embeddings must be a positive integer, got 8192.5"},
      {R"("rope_parameters": {"rope_type": "linear", "factor": -2.0})",
       "c.json: rope_parameters.factor must be a positive number, got -2.0"},
      {R"("rope_scaling": {"rope_type": "linear"})", "c.json: rope_scaling.factor is missing"},
      {R"("rope_scaling": {"rope_type": "linear", "factor": 2.0, "attention_factor": 1.0})",
       "c.json: rope_scaling.attention_factor=1.0 is not supported yet"},
      {R"("rope_scaling": {"rope_type": 3})", "c.json: rope_scaling.rope_type must be a string, got 3"},
      {R"("rope_scaling": "llama3")", "c.json: rope_scaling must be an object, got \"llama3\""},
  };
  for (const auto& [extra, msg] : cases) {
    absl::Status s = ParseHfConfig(Base(extra), "c.json").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_THAT(std::string(s.message()), HasSubstr(msg)) << extra;
    EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos) << extra;
  }
}

}  // namespace
}  // namespace baton
