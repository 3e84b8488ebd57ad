// Tests of the job config (launcher/config.h): a table of bad configs, each
// with its error code and the key its one-line message must name; good
// configs with their values; --set overrides; source_text round trips;
// the world-size checks of ValidateMesh.
#include "launcher/config.h"

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

// A valid base config; bad cases append to it (a later key of the same
// section cannot be appended in TOML, so they use --set or their own section).
constexpr char kBase[] = R"(
[model]
layers = 2
dim = 64
heads = 4
kv_heads = 2
ffn_dim = 128
vocab_size = 256

[data]
path = "data/x"

[train]
steps = 10
micro_batch_size = 2
global_batch_size = 8
seq_len = 32
lr = 1e-3
decay = "linear"

[parallel]
dp = 2
)";

struct BadCase {
  const char* label;
  std::string text;                    // full TOML text
  std::vector<std::string> overrides;  // --set
  const char* want;                    // substring of the message
};

// gtest prints a case by its label (ctest shows it beside the test name).
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.label; }

std::string Base(std::string extra = "") { return std::string(kBase) + extra; }

// kBase with `key = value` in section `section` replaced or added.
std::string With(const std::string& section, const std::string& line) {
  std::string text = kBase;
  size_t at = text.find("[" + section + "]\n");
  if (at == std::string::npos) return text + "\n[" + section + "]\n" + line + "\n";
  at = text.find('\n', at) + 1;
  std::string key = line.substr(0, line.find(' '));
  size_t old = text.find("\n" + key + " =", at - 1);
  size_t next_section = text.find("\n[", at);
  if (old != std::string::npos && (next_section == std::string::npos || old < next_section)) {
    size_t end = text.find('\n', old + 1);
    text.replace(old + 1, end - old - 1, line);
    return text;
  }
  return text.insert(at, line + "\n");
}

std::vector<BadCase> BadCases() {
  return {
      {"misspelt key", With("train", "stesp = 3"), {},
       "unknown key 'train.stesp' in test.toml (did you mean 'train.steps'?)"},
      {"key in wrong section", With("train", "dp = 3"), {}, "unknown key 'train.dp' in test.toml (did you mean 'parallel.dp'?)"},
      {"misspelt section", Base("[trian]\nsteps = 3\n"), {}, "unknown section 'trian' in test.toml (did you mean 'train'?)"},
      {"key outside a section", "steps = 3\n" + Base(), {},
       "unknown key 'steps' in test.toml (keys belong in a section; did you mean 'train.steps'?)"},
      {"section not a table", "train = 3\n", {}, "train: expected a table, got integer 3"},
      {"string for integer", With("train", "steps = \"ten\""), {}, "train.steps: expected an integer, got string \"ten\""},
      {"float for integer", With("train", "steps = 3.5"), {}, "train.steps: expected an integer, got float 3.5"},
      {"integer for bool", With("model", "tie_embeddings = 1"), {},
       "model.tie_embeddings: expected true or false, got integer 1"},
      {"string for float", With("train", "lr = \"fast\""), {}, "train.lr: expected a number, got string \"fast\""},
      {"int32 overflow", With("train", "micro_batch_size = 99999999999"), {},
       "train.micro_batch_size=99999999999 is out of range for a 32-bit integer"},
      {"non-string in list", With("data", "corpus = [\"a.txt\", 3]"), {}, "data.corpus[1]: expected a string, got integer 3"},
      {"zero micro batch", With("train", "micro_batch_size = 0"), {}, "train.micro_batch_size=0 must be >= 1"},
      {"batch not a multiple", With("train", "global_batch_size = 10"), {"train.micro_batch_size=4", "parallel.dp=1"},
       "train.global_batch_size=10 is not a multiple of train.micro_batch_size=4 × parallel.dp=1"},
      {"bad recompute policy", With("recompute", "policy = \"most\""), {},
       "recompute.policy: expected one of none|full|selective|every_k, got \"most\""},
      {"bad schedule", With("parallel", "schedule = \"zb\""), {},
       "parallel.schedule: expected one of gpipe|1f1b|interleaved|zb-h1, got \"zb\""},
      {"bad decay type", With("train", "decay = 2"), {}, "train.decay: expected one of cosine|linear|constant, got integer 2"},
      {"interleaved without chunks", With("parallel", "schedule = \"interleaved\""), {},
       "parallel.virtual_stages=1 must be >= 2 with parallel.schedule=\"interleaved\""},
      {"chunks without interleaving", With("parallel", "virtual_stages = 2"), {},
       "parallel.virtual_stages=2 must be 1 with parallel.schedule=\"1f1b\""},
      {"beta1 of one", With("train", "beta1 = 1.0"), {}, "train.beta1=1 must be in [0, 1)"},
      {"min_lr above lr", With("train", "min_lr = 0.01"), {}, "train.min_lr=0.01 must be <= train.lr=0.001"},
      {"zero stage 2", With("parallel", "zero = 2"), {}, "parallel.zero=2 must be 0 or 1"},
      {"p2p nccl not wired", With("parallel", "p2p = \"nccl\""), {},
       "parallel.p2p=\"nccl\" is not implemented yet; use \"mpi\" or \"ucx\""},
      {"microbatches mismatch", With("parallel", "microbatches = 3"), {},
       "parallel.microbatches=3 != train.global_batch_size=8 / (train.micro_batch_size=2 × parallel.dp=2) = 2"},
      {"negative exit interval", With("train", "exit_interval = -1"), {}, "train.exit_interval=-1 must be >= 0"},
      {"negative keep", With("checkpoint", "keep = -1"), {}, "checkpoint.keep=-1 must be >= 0"},
      {"zero peak for MFU", Base(), {"output.peak_tflops=0"}, "output.peak_tflops=0 must be > 0"},
      {"val fraction of one", With("data", "val_fraction = 1"), {}, "data.val_fraction=1 must be in [0, 1)"},
      {"model heads", With("model", "heads = 6"), {}, "model.heads=6 does not divide model.dim=64"},
      {"syntax error", Base("[output]\nmetrics = = 3\n"), {}, "test.toml:24:11: invalid TOML: "},
      {"override unknown key", Base(), {"train.stesp=3"},
       "unknown key 'train.stesp' in --set train.stesp=3 (did you mean 'train.steps'?)"},
      {"override wrong type", Base(), {"train.steps=ten"}, "train.steps: expected an integer, got string \"ten\""},
      {"override without =", Base(), {"train.steps"}, "--set train.steps: expected section.key=value"},
      {"override without section", Base(), {"steps=3"},
       "--set steps=3: expected section.key=value (did you mean 'train.steps'?)"},
      {"override bad enum", Base(), {"recompute.policy=most"},
       "recompute.policy: expected one of none|full|selective|every_k, got \"most\""},
  };
}

class BadConfigTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, FailsWithOneLineNamingTheKey) {
  const BadCase& c = GetParam();
  absl::StatusOr<JobConfig> got = ParseJobConfig(c.text, "test.toml", c.overrides);
  ASSERT_FALSE(got.ok()) << c.label;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.label;
  std::string msg(got.status().message());
  EXPECT_THAT(msg, HasSubstr(c.want)) << c.label;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << c.label << ": " << msg;
}

INSTANTIATE_TEST_SUITE_P(Table, BadConfigTest, ::testing::ValuesIn(BadCases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           std::string name;
                           for (char ch : std::string(info.param.label)) name += std::isalnum(ch) ? ch : '_';
                           return name;
                         });

TEST(ConfigTest, BaseCaseOfTheTableIsValid) {
  // Guards the table: each bad case differs from a config that parses.
  ASSERT_TRUE(ParseJobConfig(kBase, "test.toml", {}).ok());
  EXPECT_NE(With("train", "steps = 3").find("steps = 3\n"), std::string::npos);
  EXPECT_EQ(With("train", "steps = 3").find("steps = 10"), std::string::npos);
}

TEST(ConfigTest, GoodConfigHasItsValuesAndDefaults) {
  absl::StatusOr<JobConfig> c = ParseJobConfig(Base(R"(
[recompute]
policy = "every_k"
every_k = 3

[checkpoint]
dir = "ckpt"
every = 50
keep = 2

[output]
metrics = "m.jsonl"
progress = "lines"
)"),
                                               "test.toml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.layers, 2);
  EXPECT_EQ(c->model.dim, 64);
  EXPECT_EQ(c->model.kv_heads, 2);
  EXPECT_EQ(c->model.vocab_size, 256);
  EXPECT_EQ(c->model.rope_theta, 10000.0);  // default
  EXPECT_EQ(c->data.path, "data/x");
  EXPECT_EQ(c->train.steps, 10);
  EXPECT_EQ(c->train.global_batch_size, 8);
  EXPECT_EQ(c->train.optimizer.lr, 1e-3f);
  EXPECT_EQ(c->train.optimizer.decay, LrDecay::kLinear);
  EXPECT_EQ(c->train.optimizer.beta2, 0.95f);  // default
  EXPECT_EQ(c->parallel.dp, 2);
  EXPECT_EQ(c->parallel.schedule, ScheduleKind::k1F1B);
  EXPECT_EQ(c->microbatches(), 2);  // 8 / (2 × 2)
  EXPECT_EQ(c->recompute.policy, RecomputePolicy::kEveryK);
  EXPECT_EQ(c->recompute.every_k, 3);
  EXPECT_EQ(c->checkpoint.dir, "ckpt");
  EXPECT_EQ(c->checkpoint.every, 50);
  EXPECT_EQ(c->checkpoint.resume, "auto");
  EXPECT_EQ(c->checkpoint.keep, 2);
  EXPECT_EQ(c->output.metrics, "m.jsonl");
  EXPECT_EQ(c->output.trace, "");
  EXPECT_EQ(c->output.progress, ProgressMode::kLines);
}

TEST(ConfigTest, EmptyConfigIsTheDefaults) {
  absl::StatusOr<JobConfig> c = ParseJobConfig("", "empty.toml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.layers, ModelConfig{}.layers);
  EXPECT_EQ(c->train.steps, TrainConfig{}.steps);
  EXPECT_EQ(c->parallel, ParallelConfig{});
  EXPECT_EQ(c->checkpoint, CheckpointConfig{});
}

TEST(ConfigTest, OverridesWinAndBareWordsAreStrings) {
  absl::StatusOr<JobConfig> c = ParseJobConfig(
      Base(), "test.toml",
      {"train.steps=7", "recompute.policy=full", "model.rope_theta=5e5", "model.qkv_bias=true",
       "train.lr=1", "parallel.schedule=gpipe", "output.trace=\"t.json\"", "checkpoint.resume=ckpt/step_00000100.h5",
       "data.corpus=/usr/share/games/fortunes/*", "output.metrics=", "data.corpus=[\"a\", \"b\"]", "train.steps=9"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train.steps, 9);  // the last --set wins
  EXPECT_EQ(c->recompute.policy, RecomputePolicy::kFull);
  EXPECT_EQ(c->model.rope_theta, 5e5);
  EXPECT_TRUE(c->model.qkv_bias);
  EXPECT_EQ(c->train.optimizer.lr, 1.0f);  // an integer is a fine float
  EXPECT_EQ(c->parallel.schedule, ScheduleKind::kGPipe);
  EXPECT_EQ(c->output.trace, "t.json");
  EXPECT_EQ(c->checkpoint.resume, "ckpt/step_00000100.h5");
  EXPECT_EQ(c->output.metrics, "");  // "x=" sets the empty string
  EXPECT_EQ(c->data.corpus, (std::vector<std::string>{"a", "b"}));
}

TEST(ConfigTest, OverrideCreatesAMissingSectionAndOneWordIsAList) {
  absl::StatusOr<JobConfig> c = ParseJobConfig(
      "", "x.toml", {"parallel.schedule=zb-h1", "data.path=d", "data.corpus=/usr/share/dict/*"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->parallel.schedule, ScheduleKind::kZeroBubbleH1);
  EXPECT_EQ(c->data.corpus, std::vector<std::string>{"/usr/share/dict/*"});
}

TEST(ConfigTest, SourceTextRoundTrips) {
  absl::StatusOr<JobConfig> a = ParseJobConfig(
      Base(), "test.toml",
      {"model.norm_eps=1e-6", "model.init_std=0.1", "model.rope_theta=500000", "model.tie_embeddings=false",
       "data.val_fraction=0.3", "data.corpus=[\"a b\", \"q\\\"uote\\\\\"]", "train.lr=0.1", "train.min_lr=0",
       "train.eps=1e-12", "parallel.schedule=interleaved", "parallel.virtual_stages=2", "parallel.p2p=ucx",
       "parallel.zero=1", "recompute.policy=selective", "checkpoint.dir=c d", "checkpoint.resume=none",
       "output.progress=bar", "output.trace=trace.json"});
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<JobConfig> b = ParseJobConfig(a->source_text, "source_text", {});
  ASSERT_TRUE(b.ok()) << b.status() << "\n" << a->source_text;
  EXPECT_EQ(b->source_text, a->source_text);
  // Exact values, not just equal text:
  EXPECT_EQ(b->model.norm_eps, 1e-6f);
  EXPECT_EQ(b->model.init_std, 0.1f);
  EXPECT_EQ(b->model.rope_theta, 500000.0);
  EXPECT_FALSE(b->model.tie_embeddings);
  EXPECT_EQ(b->data.val_fraction, 0.3);
  EXPECT_EQ(b->data.corpus, (std::vector<std::string>{"a b", "q\"uote\\"}));
  EXPECT_EQ(b->train.optimizer.lr, 0.1f);
  EXPECT_EQ(b->train.optimizer.eps, 1e-12f);
  EXPECT_EQ(b->parallel, a->parallel);
  EXPECT_EQ(b->parallel.p2p, P2pTransport::kUcx);
  EXPECT_EQ(b->recompute.policy, RecomputePolicy::kSelective);
  EXPECT_EQ(b->checkpoint, a->checkpoint);
  EXPECT_EQ(b->output, a->output);
  EXPECT_EQ(b->data, a->data);
  // Every section and a default-valued key are written out.
  for (const char* s : {"[model]", "[data]", "[train]", "[parallel]", "[recompute]", "[checkpoint]", "[output]",
                        "beta2 = 0.95\n", "rope_theta = 500000.0\n", "schedule = \"interleaved\"\n"})
    EXPECT_THAT(a->source_text, HasSubstr(s));
}

TEST(ConfigTest, LoadReadsAFileAndNamesAMissingOne) {
  std::string path = ::testing::TempDir() + "/config_test.toml";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(kBase, f);
  std::fclose(f);
  absl::StatusOr<JobConfig> c = LoadJobConfig(path, {"train.steps=4"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train.steps, 4);

  absl::StatusOr<JobConfig> missing = LoadJobConfig("/nonexistent/x.toml", {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "cannot read config /nonexistent/x.toml: No such file or directory");

  absl::StatusOr<JobConfig> dir = LoadJobConfig(::testing::TempDir(), {});
  EXPECT_THAT(std::string(dir.status().message()), HasSubstr("Is a directory"));

  absl::StatusOr<JobConfig> typo = LoadJobConfig(path, {"train.stesp=4"});
  EXPECT_THAT(std::string(typo.status().message()), HasSubstr("did you mean 'train.steps'"));
}

TEST(ConfigTest, ValidateMeshChecksWorldAndWidths) {
  absl::StatusOr<JobConfig> c = ParseJobConfig(Base(), "test.toml", {"parallel.dp=1", "parallel.tp=2", "parallel.pp=2"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(ValidateMesh(*c, 4).ok());

  auto mesh_error = [&](std::vector<std::string> sets, int world) {
    absl::StatusOr<JobConfig> cfg = ParseJobConfig(Base(), "test.toml", sets);
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    absl::Status s = ValidateMesh(*cfg, world);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
    return std::string(s.message());
  };
  EXPECT_EQ(mesh_error({"parallel.dp=2", "parallel.pp=2"}, 8),
            "parallel.dp=2 × parallel.pp=2 × parallel.tp=1 = 4 ranks, but the job has 8");
  // heads=4, kv_heads=2, ffn_dim=128, vocab_size=256: tp can be 1 or 2.
  EXPECT_EQ(mesh_error({"parallel.dp=1", "parallel.tp=3"}, 3),
            "parallel.tp=3 does not divide model.heads=4 (choose tp in 1, 2)");
  EXPECT_EQ(mesh_error({"parallel.dp=1", "parallel.tp=4"}, 4),
            "parallel.tp=4 does not divide model.kv_heads=2 (choose tp in 1, 2)");
  EXPECT_EQ(mesh_error({"parallel.dp=1", "parallel.tp=2", "model.ffn_dim=129"}, 2),
            "parallel.tp=2 does not divide model.ffn_dim=129 (choose tp in 1)");
  EXPECT_EQ(mesh_error({"parallel.dp=1", "parallel.tp=2", "model.vocab_size=257"}, 2),
            "parallel.tp=2 does not divide model.vocab_size=257 (choose tp in 1)");
  EXPECT_EQ(mesh_error({"parallel.dp=1", "parallel.pp=4"}, 4), "model.layers=2 is fewer than parallel.pp=4 stages");
  EXPECT_EQ(mesh_error({"parallel.dp=1", "parallel.pp=2", "parallel.schedule=interleaved", "parallel.virtual_stages=2"}, 2),
            "model.layers=2 is fewer than parallel.pp=2 × parallel.virtual_stages=2 = 4 model chunks");
}

}  // namespace
}  // namespace baton
