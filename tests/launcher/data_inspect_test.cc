// `baton data inspect` (launcher/data_inspect.h): on a dataset made by
// `baton data tokenize` from a small text file (byte and BPE tokenizers),
// on Megatron's own uint16 golden file and on an int32 file, the report
// holds the right counts and id range, decodes documents to their text and
// samples to what the trainer's Sampler hands a run, and names ids that do
// not fit the vocabulary (exit status 2 from the command).
#include "launcher/data_inspect.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/indexed_dataset.h"
#include "runtime/sampler.h"

namespace baton {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

struct CliResult {
  int status = -1;
  std::string out, err;
};

// Runs the baton binary; stdout and stderr kept apart.
CliResult RunBaton(const std::string& args, const fs::path& dir) {
  const std::string err_path = (dir / "stderr.txt").string();
  const std::string cmd = std::string(BATON_BINARY) + " " + args + " 2>" + err_path;
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream in(err_path);
  r.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

// Three documents in fortune(6) format ("%" lines separate them).
constexpr char kCorpus[] =
    "The first fortune.\n"
    "%\n"
    "Second:\ttwo lines,\n"
    "the end.\n"
    "%\n"
    "Third and last.\n";

class DataInspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / ("baton_inspect_" + std::string(info->name()) + "_" +
                                              std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "corpus.txt") << kCorpus;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `baton data tokenize` of the corpus into dir/NAME.bin/.idx.
  std::string Tokenize(const std::string& name, const std::string& tokenizer = "") {
    const std::string prefix = (dir_ / name).string();
    const CliResult r = RunBaton("data tokenize --input " + (dir_ / "corpus.txt").string() + " --output " +
                                     prefix + (tokenizer.empty() ? "" : " --tokenizer " + tokenizer),
                                 dir_);
    EXPECT_EQ(r.status, 0) << r.err;
    return prefix;
  }

  fs::path dir_;
};

TEST_F(DataInspectTest, ByteDatasetCountsRangeAndDocuments) {
  DataInspectOptions o;
  o.prefix = Tokenize("byte");
  o.docs = {1, 0};
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ids_fit);
  // 19 + 28 + 16 bytes of text, each document framed by BOS and EOS.
  const int tokens = 19 + 28 + 16 + 3 * 2;
  EXPECT_THAT(r->text, HasSubstr("dtype       uint16 (Megatron code 8, 2 bytes per token), .bin " +
                                 std::to_string(2 * tokens) + " bytes\n"));
  EXPECT_THAT(r->text, HasSubstr("documents   3 (0 empty), 3 sequences\n"));
  EXPECT_THAT(r->text,
              HasSubstr("tokens      " + std::to_string(tokens) + " (per document: min 18, mean 23.0, max 30)"));
  // '\t' (9) is the smallest byte, EOS (257) the largest id.
  EXPECT_THAT(r->text,
              HasSubstr("token ids   9 .. 257 against vocabulary 258 (the byte tokenizer's vocabulary): all fit"));
  EXPECT_THAT(r->text, HasSubstr("document 1 (sequences 1 .. 1, 30 tokens):\n"
                                 "<bos>Second:\ttwo lines,\nthe end.\n<eos>\n"));
  EXPECT_THAT(r->text, HasSubstr("document 0 (sequences 0 .. 0, 21 tokens):\n<bos>The first fortune.\n<eos>\n"));
  // Requested order is kept: document 1 is shown before document 0.
  EXPECT_LT(r->text.find("document 1 ("), r->text.find("document 0 ("));
}

TEST_F(DataInspectTest, IdsBeyondTheVocabularyAreNamed) {
  DataInspectOptions o;
  o.prefix = Tokenize("byte");
  o.vocab_size = 100;  // 'f' (102) and up, BOS and EOS do not fit
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ids_fit);
  EXPECT_THAT(r->text, HasSubstr("against vocabulary 100 (--vocab-size): "));
  EXPECT_THAT(r->text, HasSubstr("do NOT fit"));
  EXPECT_THAT(r->ids_error, HasSubstr("outside [0, 100)"));
  EXPECT_THAT(r->ids_error, HasSubstr("the first (256) in document 0"));  // BOS comes first
  EXPECT_THAT(r->ids_error, HasSubstr("model.vocab_size to at least 258"));

  // The command prints the report, then one error line, and exits 2.
  CliResult cli = RunBaton("data inspect " + o.prefix + " --vocab-size 100", dir_);
  EXPECT_EQ(cli.status, 2);
  EXPECT_THAT(cli.out, HasSubstr("documents   3 (0 empty)"));
  EXPECT_THAT(cli.err, ::testing::StartsWith("baton: error: " + o.prefix + ": "));
  EXPECT_EQ(std::count(cli.err.begin(), cli.err.end(), '\n'), 1) << cli.err;
  // A vocabulary that holds every id: exit 0, nothing on stderr.
  cli = RunBaton("data inspect " + o.prefix + " --vocab-size 258", dir_);
  EXPECT_EQ(cli.status, 0) << cli.err;
  EXPECT_EQ(cli.err, "");
  EXPECT_THAT(cli.out, HasSubstr("all fit"));
}

// --sample N is row N of what the trainer's Sampler hands a run (one batch
// of N + 1 samples), decoded byte by byte here independently of Render.
TEST_F(DataInspectTest, SamplesAreTheRunsSamplesInOrder) {
  DataInspectOptions o;
  o.prefix = Tokenize("byte");
  o.samples = {4, 0};
  o.seq_len = 7;
  o.seed = 99;
  o.val_fraction = 0;
  o.ids = true;
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->text, HasSubstr("samples (seq_len 7, seed 99, val_fraction 0): 9 train (3 documents, 69 tokens)"));

  absl::StatusOr<IndexedDataset> ds = IndexedDataset::Open(o.prefix);
  ASSERT_TRUE(ds.ok());
  absl::StatusOr<Sampler> sampler = Sampler::Create(*ds, 7, 99, 0.0);
  ASSERT_TRUE(sampler.ok());
  Tensor tokens, targets;
  sampler->NextBatch(5, tokens, targets);
  for (int n : {4, 0}) {
    std::string ids = "  ids:", text;
    for (int t = 0; t <= 7; ++t) {
      const int32_t id = t < 7 ? tokens.data<int32_t>()[n * 7 + t] : targets.data<int32_t>()[n * 7 + 6];
      ids += " " + std::to_string(id);
      text += id == 256   ? std::string("<bos>")
              : id == 257 ? std::string("<eos>")
                          : std::string(1, static_cast<char>(id));
    }
    EXPECT_THAT(r->text, HasSubstr("\n" + ids + "\n" + text + "\n")) << "sample " << n;
  }
  // Another seed reads another order.
  o.seed = 100;
  absl::StatusOr<DataInspectReport> other = InspectDataset(o);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->text, r->text);
}

TEST_F(DataInspectTest, BpeDatasetDecodesWithItsTokenizer) {
  const std::string tok = std::string(BATON_SOURCE_DIR) + "/tests/data/bpe_llama3.json";
  DataInspectOptions o;
  o.prefix = Tokenize("bpe", tok);
  o.tokenizer = tok;
  o.docs = {2};
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ids_fit) << r->ids_error;
  EXPECT_THAT(r->text, HasSubstr("Third and last.\n<eos>\n"));
  EXPECT_THAT(r->text, HasSubstr("<bos>Third"));
  // Read with the byte tokenizer instead, the BPE ids do not fit its 258.
  o.tokenizer = "byte";
  r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ids_fit);
  EXPECT_THAT(r->text, HasSubstr("?>"));  // ids it does not know are marked, not dropped
}

// Megatron's own builder wrote tests/data/golden_tiny (scripts/megatron_golden.py).
TEST_F(DataInspectTest, MegatronUint16Golden) {
  DataInspectOptions o;
  o.prefix = std::string(BATON_SOURCE_DIR) + "/tests/data/golden_tiny";
  o.docs = {3, 2};
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->text, HasSubstr("dtype       uint16 (Megatron code 8, 2 bytes per token), .bin 52 bytes"));
  EXPECT_THAT(r->text, HasSubstr("documents   4 (1 empty), 4 sequences"));
  EXPECT_THAT(r->text, HasSubstr("tokens      26 (per document: min 0, mean 6.5, max 13)"));
  EXPECT_THAT(r->text, HasSubstr("document 3 (sequences 2 .. 3, 8 tokens):\n<bos>ab<eos><bos>c\n<eos>\n"));
  EXPECT_THAT(r->text, HasSubstr("document 2 (sequences 2 .. 1, 0 tokens):\n\n"));
}

// int32 files (Megatron's dtype for vocabularies >= 65500) with ids past 65535.
TEST_F(DataInspectTest, Int32DatasetWithLargeIds) {
  const std::string prefix = (dir_ / "i32").string();
  {
    absl::StatusOr<IndexedDatasetWriter> w = IndexedDatasetWriter::Create(prefix, IndexDType::kInt32);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{256, 'o', 'k', 257}).ok());
    w->EndDocument();
    ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{128000, 'h', 'i', 128255}).ok());
    w->EndDocument();
    ASSERT_TRUE(w->Finish().ok());
  }
  DataInspectOptions o;
  o.prefix = prefix;
  o.vocab_size = 128256;
  o.docs = {1};
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ids_fit);
  EXPECT_THAT(r->text, HasSubstr("dtype       int32 (Megatron code 4, 4 bytes per token), .bin 32 bytes"));
  EXPECT_THAT(r->text, HasSubstr("token ids   104 .. 128255 against vocabulary 128256 (--vocab-size): all fit"));
  EXPECT_THAT(r->text, HasSubstr("note        ids above 257 are not in the byte tokenizer"));
  EXPECT_THAT(r->text, HasSubstr("<id 128000?>hi<id 128255?>\n"));
  o.vocab_size = 128255;  // one short: the largest id no longer fits
  r = InspectDataset(o);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ids_fit);
  EXPECT_THAT(r->ids_error, HasSubstr("1 token ids outside [0, 128255)"));
  EXPECT_THAT(r->ids_error, HasSubstr("the first (128255) in document 1"));
}

TEST_F(DataInspectTest, BadInputNamesTheFlag) {
  DataInspectOptions o;
  o.prefix = Tokenize("byte");
  o.docs = {3};
  absl::StatusOr<DataInspectReport> r = InspectDataset(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("--doc 3: "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("documents 0 .. 2"));

  o.docs = {};
  o.samples = {0};  // no seq_len
  r = InspectDataset(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("--seq-len"));

  struct Case {
    std::string args, needle;
  } cases[] = {
      {"data inspect", "PREFIX is required"},
      {"data inspect " + (dir_ / "missing").string(), (dir_ / "missing").string()},
      {"data inspect " + o.prefix + " --doc 7", "--doc 7"},
      {"data inspect " + o.prefix + " --sample 1", "--seq-len"},
      {"data inspect " + o.prefix + " --vocab-size many", "--vocab-size"},
      {"data inspect " + o.prefix + " --frobnicate", "--frobnicate"},
  };
  for (const Case& c : cases) {
    const CliResult cli = RunBaton(c.args, dir_);
    EXPECT_EQ(cli.status, 2) << c.args << "\n" << cli.err;
    EXPECT_THAT(cli.err, ::testing::StartsWith("baton: error: ")) << c.args;
    EXPECT_THAT(cli.err, HasSubstr(c.needle)) << c.args;
    EXPECT_EQ(cli.out, "") << c.args;
  }
}

}  // namespace
}  // namespace baton
