// Every examples/*.toml goes through the launcher's real loader and
// validators (launcher/config.h), so an example that a key rename, a new
// check or a typo breaks fails here instead of in a user's first run. The
// commands its comment tells users to run (`mpirun -n N baton train
// --config examples/X.toml --set ...`) are checked too, at their world size.
// Negative cases show the checks can fail: an unknown key slipped into each
// file, a tp that does not divide the model, a world size that is not
// dp·pp·tp.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launcher/config.h"
#include "launcher/infer_config.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kExamples = fs::path(BATON_SOURCE_DIR) / "examples";

// The job configs (train and distill); examples/infer.toml is an [infer]
// file for `baton infer --config`, checked by its own loader below.
std::vector<fs::path> ExampleConfigs() {
  std::vector<fs::path> out;
  for (const fs::directory_entry& e : fs::directory_iterator(kExamples)) {
    if (e.path().extension() == ".toml" && e.path().filename() != "infer.toml") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadText(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int World(const JobConfig& c) { return c.parallel.dp * c.parallel.pp * c.parallel.tp; }

// A command from a config's comment: `[mpirun -n N] baton train --config F [--set K=V ...]`.
struct Command {
  int ranks = 1;
  std::string config;
  std::vector<std::string> overrides;
  std::string line;
};

std::vector<Command> CommandsInComments(const std::string& text) {
  static const std::regex kLine(R"(^#.*?(?:mpirun -n (\d+) )?baton train --config (\S+)(.*)$)");
  std::vector<Command> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::smatch m;
    const std::string s(line);
    if (!std::regex_match(s, m, kLine)) continue;
    Command c;
    c.line = s;
    if (m[1].matched) c.ranks = std::stoi(m[1].str());
    c.config = m[2].str();
    std::string rest = m[3].str();
    if (const size_t note = rest.find(" #"); note != std::string::npos) rest.resize(note);  // a trailing remark
    std::vector<std::string> words = absl::StrSplit(rest, ' ', absl::SkipEmpty());
    for (size_t i = 0; i < words.size(); ++i) {
      if (words[i] == "--set") continue;
      c.overrides.push_back(words[i]);
    }
    out.push_back(c);
  }
  return out;
}

TEST(ExampleConfigs, TheRealSizeExamplesExist) {
  std::vector<std::string> names;
  for (const fs::path& p : ExampleConfigs()) names.push_back(p.filename().string());
  for (const char* want : {"tiny.toml", "llama-125m.toml", "llama-1.3b.toml", "llama3-8b-tp8.toml",
                           "llama-7b-tp4.toml"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
}

TEST(ExampleConfigs, EveryExampleLoadsAndFitsItsMesh) {
  for (const fs::path& p : ExampleConfigs()) {
    SCOPED_TRACE(p.string());
    absl::StatusOr<JobConfig> c = LoadJobConfig(p.string(), {});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(ValidateJobConfig(*c).ok());
    // The world it is meant for: dp·pp·tp ranks (tp must divide heads, kv
    // heads, ffn_dim and vocab; pp·virtual_stages must not exceed the layers).
    const absl::Status mesh = ValidateMesh(*c, World(*c));
    EXPECT_TRUE(mesh.ok()) << mesh;
    // The effective config parses back to the same values (what checkpoints store).
    absl::StatusOr<JobConfig> again = ParseJobConfig(c->source_text, p.string(), {});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->source_text, c->source_text);
  }
}

TEST(ExampleConfigs, CommandsInTheCommentsAreValid) {
  int checked = 0;
  for (const fs::path& p : ExampleConfigs()) {
    const std::string text = ReadText(p);
    for (const Command& cmd : CommandsInComments(text)) {
      SCOPED_TRACE(cmd.line);
      // A comment names its own file, or another example it builds on (a
      // distill config names the teacher's training job); both must exist.
      EXPECT_TRUE(fs::exists(fs::path(BATON_SOURCE_DIR) / cmd.config)) << cmd.config;
      absl::StatusOr<JobConfig> c = LoadJobConfig((fs::path(BATON_SOURCE_DIR) / cmd.config).string(), cmd.overrides);
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_EQ(World(*c), cmd.ranks) << "mpirun -n must be dp·pp·tp";
      const absl::Status mesh = ValidateMesh(*c, cmd.ranks);
      EXPECT_TRUE(mesh.ok()) << mesh;
      ++checked;
    }
  }
  EXPECT_GE(checked, 6);  // tiny, 125m, 1.3b, 8b, and the 7b's two
}

TEST(ExampleConfigs, InferConfigLoadsAndRefusesAnUnknownKey) {
  const fs::path p = kExamples / "infer.toml";
  absl::StatusOr<InferConfig> c = LoadInferConfig(p.string(), {});
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<InferConfig> bad = LoadInferConfig(p.string(), {"infer.max_new_tokenz=3"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_new_tokenz"));
}

// The checks above can fail: each example with an unknown key slipped into
// its [model] section, or a mesh that does not fit it, is refused with the
// key named.
TEST(ExampleConfigs, UnknownKeyAndBadMeshAreRefused) {
  for (const fs::path& p : ExampleConfigs()) {
    SCOPED_TRACE(p.string());
    std::string text = ReadText(p);
    const size_t model = text.find("[model]\n");
    ASSERT_NE(model, std::string::npos);
    text.insert(model + 8, "hidden_dim = 4096\n");
    absl::StatusOr<JobConfig> bad = ParseJobConfig(text, p.string(), {});
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr("model.hidden_dim"));

    // tp = 3 divides none of the examples' head counts.
    absl::StatusOr<JobConfig> c = LoadJobConfig(p.string(), {"parallel.tp=3"});
    ASSERT_TRUE(c.ok()) << c.status();
    absl::Status mesh = ValidateMesh(*c, World(*c));
    EXPECT_FALSE(mesh.ok());
    EXPECT_THAT(std::string(mesh.message()), HasSubstr("parallel.tp"));
    // A world that is not dp·pp·tp.
    c = LoadJobConfig(p.string(), {});
    ASSERT_TRUE(c.ok());
    mesh = ValidateMesh(*c, World(*c) + 1);
    EXPECT_FALSE(mesh.ok());
  }
}

}  // namespace
}  // namespace baton
