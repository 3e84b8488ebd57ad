// IndexedDataset reader/writer: byte-for-byte compatibility with Megatron-LM
// (a hand-computed header and golden files from scripts/megatron_golden.py),
// round trips in every integer dtype, and a clear error for each way an
// index can be broken.
#include "runtime/indexed_dataset.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
void Put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}

// A fresh directory per test so parallel ctest runs do not collide.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      ("baton_idx_" + std::string(info->name()) + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::vector<int32_t> Framed(const std::string& text) {  // BOS + bytes + EOS (ByteTokenizer ids)
  std::vector<int32_t> ids{256};
  for (unsigned char c : text) ids.push_back(c);
  ids.push_back(257);
  return ids;
}

// Same input as GOLDEN_DOCS in scripts/megatron_golden.py.
const std::vector<std::vector<std::string>> kGoldenDocs = {
    {"Hi\n"}, {"A fortune.\n"}, {}, {"ab", "c\n"}};
const std::string kGoldenPrefix = std::string(BATON_SOURCE_DIR) + "/tests/data/golden_tiny";

TEST(IndexDTypeTest, OptimalDTypeFollowsMegatronThreshold) {
  EXPECT_EQ(OptimalIndexDType(258), IndexDType::kUInt16);
  EXPECT_EQ(OptimalIndexDType(65499), IndexDType::kUInt16);
  EXPECT_EQ(OptimalIndexDType(65500), IndexDType::kInt32);
  EXPECT_EQ(OptimalIndexDType(128256), IndexDType::kInt32);
  EXPECT_EQ(static_cast<int>(IndexDType::kUInt16), 8);  // Megatron's DType codes
  EXPECT_EQ(static_cast<int>(IndexDType::kInt32), 4);
  EXPECT_EQ(IndexDTypeSize(IndexDType::kUInt16), 2u);
  EXPECT_STREQ(IndexDTypeName(IndexDType::kUInt16), "uint16");
}

TEST(IndexedDatasetWriterTest, HeaderMatchesHandComputedBytes) {
  const std::string prefix = TestDir() + "/h";
  auto w = IndexedDatasetWriter::Create(prefix, IndexDType::kInt32);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{1, 2, 3}).ok());
  ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{70000}).ok());
  w->EndDocument();
  ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{-5, 6}).ok());
  w->EndDocument();
  ASSERT_TRUE(w->Finish().ok());

  std::string idx("MMIDIDX\0\0", 9);
  Put<uint64_t>(idx, 1);  // version
  Put<uint8_t>(idx, 4);   // int32
  Put<uint64_t>(idx, 3);  // sequences
  Put<uint64_t>(idx, 3);  // document indices = documents + 1
  for (int32_t len : {3, 1, 2}) Put<int32_t>(idx, len);
  for (int64_t ptr : {0, 12, 16}) Put<int64_t>(idx, ptr);  // bytes
  for (int64_t d : {0, 2, 3}) Put<int64_t>(idx, d);
  ASSERT_EQ(idx.size(), 34u + 3 * 4 + 3 * 8 + 3 * 8);
  EXPECT_EQ(ReadBytes(prefix + ".idx"), idx);

  std::string bin;
  for (int32_t t : {1, 2, 3, 70000, -5, 6}) Put<int32_t>(bin, t);
  EXPECT_EQ(ReadBytes(prefix + ".bin"), bin);
  EXPECT_FALSE(std::filesystem::exists(prefix + ".bin.tmp"));
  EXPECT_FALSE(std::filesystem::exists(prefix + ".idx.tmp"));
}

TEST(IndexedDatasetWriterTest, MatchesMegatronGoldenBytes) {
  const std::string prefix = TestDir() + "/g";
  auto w = IndexedDatasetWriter::Create(prefix, OptimalIndexDType(258));
  ASSERT_TRUE(w.ok()) << w.status();
  for (const auto& doc : kGoldenDocs) {
    for (const std::string& text : doc) ASSERT_TRUE(w->AddSequence(Framed(text)).ok());
    w->EndDocument();
  }
  ASSERT_TRUE(w->Finish().ok());
  const std::string golden_idx = ReadBytes(kGoldenPrefix + ".idx");
  ASSERT_EQ(golden_idx.size(), 122u) << "regenerate with scripts/megatron_golden.py";
  EXPECT_EQ(ReadBytes(prefix + ".idx"), golden_idx);
  EXPECT_EQ(ReadBytes(prefix + ".bin"), ReadBytes(kGoldenPrefix + ".bin"));
}

TEST(IndexedDatasetTest, ReadsMegatronGolden) {
  auto ds = IndexedDataset::Open(kGoldenPrefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->dtype(), IndexDType::kUInt16);
  EXPECT_EQ(ds->num_sequences(), 4);
  EXPECT_EQ(ds->num_documents(), 4);  // one of them empty
  EXPECT_EQ(ds->num_tokens(), 5 + 13 + 4 + 4);
  std::vector<int64_t> doc_index;
  for (int64_t d = 0; d <= ds->num_documents(); ++d) doc_index.push_back(ds->document_index(d));
  EXPECT_THAT(doc_index, ElementsAre(0, 1, 2, 2, 4));
  EXPECT_EQ(ds->sequence_length(1), 13);
  EXPECT_EQ(ds->sequence_pointer(2), 36);  // (5 + 13) tokens * 2 bytes
  EXPECT_EQ(ds->Get(1), Framed("A fortune.\n"));
  EXPECT_EQ(ds->Get(3), Framed("c\n"));
  int32_t part[3];
  ds->Get(1, 2, 3, part);  // [BOS, 'A', ' ', 'f', 'o', ...]
  EXPECT_THAT(part, ElementsAre(' ', 'f', 'o'));
}

TEST(IndexedDatasetTest, RoundTripsEveryIntegerDTypeAtItsLimits) {
  struct Case {
    IndexDType dtype;
    std::vector<int32_t> tokens;
  };
  const std::vector<Case> cases = {
      {IndexDType::kUInt8, {0, 1, 255}},
      {IndexDType::kInt8, {-128, 0, 127}},
      {IndexDType::kInt16, {-32768, 7, 32767}},
      {IndexDType::kUInt16, {0, 257, 65535}},
      {IndexDType::kInt32,
       {std::numeric_limits<int32_t>::min(), 0, std::numeric_limits<int32_t>::max()}},
      {IndexDType::kInt64, {-1, 0, 123456789}},
  };
  const std::string dir = TestDir();
  for (const Case& c : cases) {
    SCOPED_TRACE(IndexDTypeName(c.dtype));
    const std::string prefix = dir + "/" + IndexDTypeName(c.dtype);
    auto w = IndexedDatasetWriter::Create(prefix, c.dtype);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE(w->AddSequence(c.tokens).ok());
    ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{}).ok());  // empty sequences are legal
    ASSERT_TRUE(w->Finish().ok());                             // closes the open document
    EXPECT_EQ(std::filesystem::file_size(prefix + ".bin"),
              c.tokens.size() * IndexDTypeSize(c.dtype));
    auto ds = IndexedDataset::Open(prefix);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(ds->dtype(), c.dtype);
    EXPECT_EQ(ds->num_documents(), 1);
    EXPECT_EQ(ds->num_sequences(), 2);
    EXPECT_EQ(ds->Get(0), c.tokens);
    EXPECT_TRUE(ds->Get(1).empty());
  }
}

TEST(IndexedDatasetTest, EmptyDatasetRoundTrips) {
  const std::string prefix = TestDir() + "/e";
  auto w = IndexedDatasetWriter::Create(prefix, IndexDType::kUInt16);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_EQ(std::filesystem::file_size(prefix + ".idx"),
            34u + 8u);  // header + document_indices {0}
  auto ds = IndexedDataset::Open(prefix);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->num_sequences(), 0);
  EXPECT_EQ(ds->num_documents(), 0);
}

TEST(IndexedDatasetWriterTest, RejectsTokensOutsideDType) {
  const std::string prefix = TestDir() + "/r";
  auto w = IndexedDatasetWriter::Create(prefix, IndexDType::kUInt16);
  ASSERT_TRUE(w.ok());
  absl::Status st = w->AddSequence(std::vector<int32_t>{1, 65536});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("token 65536 at position 1 of sequence 0 does not fit dtype uint16"));
  st = w->AddSequence(std::vector<int32_t>{-1});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w->num_sequences(), 0);  // rejected sequences are not written
  EXPECT_TRUE(w->AddSequence(std::vector<int32_t>{65535}).ok());
}

TEST(IndexedDatasetWriterTest, RejectsFloatDType) {
  auto w = IndexedDatasetWriter::Create(TestDir() + "/f", IndexDType::kFloat32);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("integer type, got float32"));
}

TEST(IndexedDatasetWriterTest, UnfinishedWriterLeavesNoFiles) {
  const std::string dir = TestDir();
  {
    auto w = IndexedDatasetWriter::Create(dir + "/u", IndexDType::kUInt16);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{1, 2}).ok());
    EXPECT_TRUE(std::filesystem::exists(dir + "/u.bin.tmp"));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(IndexedDatasetWriterTest, OverwritesAnExistingDataset) {
  const std::string prefix = TestDir() + "/o";
  for (int32_t token : {7, 9}) {
    auto w = IndexedDatasetWriter::Create(prefix, IndexDType::kUInt16);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->AddSequence(std::vector<int32_t>{token, token}).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  auto ds = IndexedDataset::Open(prefix);
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(ds->Get(0), (std::vector<int32_t>{9, 9}));
}

// ---- a clear error for each kind of broken index ----

class BrokenIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = TestDir() + "/x";
    std::filesystem::copy_file(kGoldenPrefix + ".idx", prefix_ + ".idx");
    std::filesystem::copy_file(kGoldenPrefix + ".bin", prefix_ + ".bin");
    idx_ = ReadBytes(prefix_ + ".idx");
    ASSERT_TRUE(IndexedDataset::Open(prefix_).ok());  // intact before each perturbation
  }
  absl::Status OpenWithIdx(const std::string& idx) {
    WriteBytes(prefix_ + ".idx", idx);
    return IndexedDataset::Open(prefix_).status();
  }
  void ExpectError(const absl::Status& st, absl::StatusCode code, const std::string& text) {
    EXPECT_EQ(st.code(), code) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(text));
  }
  std::string prefix_, idx_;
};

TEST_F(BrokenIndexTest, MissingFiles) {
  std::filesystem::remove(prefix_ + ".bin");
  ExpectError(IndexedDataset::Open(prefix_).status(), absl::StatusCode::kNotFound,
              prefix_ + ".bin: no such file");
  ExpectError(IndexedDataset::Open(prefix_ + "nope").status(), absl::StatusCode::kNotFound,
              prefix_ + "nope.idx: no such file");
}

TEST_F(BrokenIndexTest, BadMagic) {
  std::string idx = idx_;
  idx[0] = 'X';
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument,
              prefix_ + ".idx: bad magic, not a Megatron MMIDIDX index");
  ExpectError(OpenWithIdx(""), absl::StatusCode::kInvalidArgument, "bad magic");
}

TEST_F(BrokenIndexTest, BadVersion) {
  std::string idx = idx_;
  idx[9] = 2;
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument,
              "unsupported version 2 (expected 1)");
}

TEST_F(BrokenIndexTest, BadDTypeCode) {
  std::string idx = idx_;
  idx[17] = 9;
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument, "unknown dtype code 9");
  idx[17] = 7;
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument,
              "dtype float32 cannot hold token ids");
}

TEST_F(BrokenIndexTest, TruncatedHeaderAndArrays) {
  ExpectError(OpenWithIdx(idx_.substr(0, 20)), absl::StatusCode::kInvalidArgument,
              "truncated header");
  ExpectError(OpenWithIdx(idx_.substr(0, idx_.size() - 8)), absl::StatusCode::kInvalidArgument,
              "does not match its header");
  std::string idx = idx_;
  idx[18 + 7] = 0x7f;  // an absurd sequence count must not overflow the size check
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument, "do not fit a 122-byte index");
}

TEST_F(BrokenIndexTest, DocumentIndicesInconsistent) {
  std::string idx = idx_;
  idx[idx.size() - 8] = 3;  // last document index 4 -> 3
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument,
              "last document index 3 != sequence count 4");
  idx = idx_;
  idx[idx.size() - 16] = 0;  // {0,1,2,2,4} -> {0,1,2,0,4}
  ExpectError(OpenWithIdx(idx), absl::StatusCode::kInvalidArgument,
              "document_indices decrease at 3");
}

TEST_F(BrokenIndexTest, BinShorterThanIndexSays) {
  const std::string bin = ReadBytes(prefix_ + ".bin");
  WriteBytes(prefix_ + ".bin", bin.substr(0, bin.size() - 2));
  ExpectError(IndexedDataset::Open(prefix_).status(), absl::StatusCode::kInvalidArgument,
              prefix_ + ".bin: sequence 3 (4 tokens at byte 44) lies outside the 50-byte file");
}

}  // namespace
}  // namespace baton
