// Tests of the safetensors reader and writer (checkpoints/safetensors.h):
// byte identity with Hugging Face's writer (tests/data/golden_small.safetensors,
// made by scripts/make_golden_safetensors.py), round trips of every dtype,
// and a table of corrupt files, every truncation and 10k seeded mutations of
// a valid file, each of which must give a Status, never a crash.
#include "checkpoints/safetensors.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/convert.h"
#include "runtime/file_util.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) { return ReadWholeFile(path).value_or("<unreadable>"); }

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

absl::Span<const uint8_t> AsSpan(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Each test gets a fresh directory, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "safetensors_test.XXXXXX";
    BATON_CHECK(mkdtemp(dir_.data()) != nullptr);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

template <typename T>
Tensor Make(const Shape& shape, const std::vector<T>& values, DType dtype) {
  Tensor t = Tensor::Empty(shape, dtype);
  BATON_CHECK(t.nbytes() == values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}
Tensor F32(const Shape& shape, const std::vector<float>& v) { return Make(shape, v, DType::kF32); }
Tensor I32(const Shape& shape, const std::vector<int32_t>& v) { return Make(shape, v, DType::kI32); }

std::vector<float> Floats(const Tensor& t) {
  const float* p = t.data<float>();
  return std::vector<float>(p, p + t.numel());
}

// A file from a header string and data bytes; `n` overrides the length field.
std::string MakeFile(const std::string& header, const std::string& data, int64_t n = -1) {
  uint64_t len = n < 0 ? header.size() : static_cast<uint64_t>(n);
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
}

// ---- golden file

const char kGoldenMetadataValue[] = "pt \"quoted\"\n\x01 \xc3\xa9";
const char kUnicodeName[] = "\xc3\xbcn\xc3\xaf\"code\tname";

// Same tensors as scripts/make_golden_safetensors.py, deliberately listed in
// another order: the writer must sort them as HF does.
std::vector<SafetensorsTensor> GoldenTensors() {
  return {
      {"step", I32({}, {7})},
      {"attn.wq", F32({2, 2}, {0.1f, -2.5f, 65519.0f, 1e-7f}), "F16"},
      {kUnicodeName, I32({2}, {-1, 2147483647})},
      {"norm.weight", F32({3}, {1.0f, 0.1f, -3.14159f}), "BF16"},
      {"embed.weight", F32({2, 3}, {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 100.0f})},
      {"empty", F32({0, 3}, {})},
      {"rope.theta", Make<double>({1}, {10000.5}, DType::kF64)},
      {"a.bias", F32({2}, {0.25f, -8.0f})},
  };
}

const std::string kGolden = BATON_SOURCE_DIR "/tests/data/golden_small.safetensors";

TEST_F(SafetensorsTest, WriterIsByteIdenticalToHuggingFace) {
  std::string golden = ReadFile(kGolden);
  ASSERT_EQ(golden.size(), 642u) << kGolden;
  std::string path = dir_ + "/out.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, GoldenTensors(), {{"format", kGoldenMetadataValue}}).ok());
  std::string ours = ReadFile(path);
  ASSERT_EQ(ours.size(), golden.size());
  for (size_t i = 0; i < golden.size(); ++i) {
    ASSERT_EQ(ours[i], golden[i]) << "first difference at byte " << i << "\nours:   " << ours.substr(0, 600)
                                  << "\ngolden: " << golden.substr(0, 600);
  }
}

TEST_F(SafetensorsTest, GoldenComparisonCatchesADifferentOrder) {
  // Negative control: the same bytes but without the dtype sort differ.
  std::string path = dir_ + "/out.safetensors";
  std::vector<SafetensorsTensor> tensors = GoldenTensors();
  tensors[1].dtype = "";  // attn.wq stays F32: order and sizes change
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", kGoldenMetadataValue}}).ok());
  EXPECT_NE(ReadFile(path), ReadFile(kGolden));
}

TEST_F(SafetensorsTest, ReadsGoldenFile) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(kGolden);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{{"format", kGoldenMetadataValue}}));
  std::vector<std::string> names;
  for (const SafetensorsEntry& e : f->entries()) names.push_back(e.name);
  EXPECT_THAT(names, ElementsAre("rope.theta", "a.bias", "embed.weight", "empty", "step", kUnicodeName,
                                 "norm.weight", "attn.wq"));
  const SafetensorsEntry* wq = f->Find("attn.wq");
  ASSERT_NE(wq, nullptr);
  EXPECT_EQ(wq->dtype, "F16");
  EXPECT_THAT(wq->shape, ElementsAre(2, 2));
  EXPECT_EQ(wq->begin, 58u);
  EXPECT_EQ(wq->end, 66u);
  EXPECT_EQ(f->Find("attn"), nullptr);

  absl::StatusOr<Tensor> t = f->ReadAsF32("attn.wq");
  ASSERT_TRUE(t.ok()) << t.status();
  // f16 of 0.1, -2.5, 65519 (rounds to the largest finite, 65504), 1e-7 (subnormal 2·2^-24).
  EXPECT_THAT(Floats(*t), ElementsAre(0.0999755859375f, -2.5f, 65504.0f, std::ldexp(2.0f, -24)));
  t = f->ReadAsF32("norm.weight");
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(Floats(*t), ElementsAre(1.0f, 0.10009765625f, -3.140625f));
  t = f->ReadAsF32("rope.theta");
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(Floats(*t), ElementsAre(10000.5f));
  t = f->ReadAsF32("step");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->dtype(), DType::kI32);
  EXPECT_EQ(t->rank(), 0);
  EXPECT_EQ(t->data<int32_t>()[0], 7);
  t = f->ReadAsF32("empty");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->shape(), (Shape{0, 3}));
  EXPECT_EQ(f->Bytes(*f->Find(kUnicodeName)).size(), 8u);

  absl::StatusOr<Tensor> missing = f->ReadAsF32("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("\"nope\""));
}

// ---- round trips

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  const std::string& dir = dir_;
  std::string path = dir + "/all.safetensors";
  // 16-bit patterns include NaNs, infinities, subnormals and -0: raw bytes must survive.
  std::vector<uint16_t> bits16 = {0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E01, 0x0001, 0x3C00, 0xFFFF, 0x7F80, 0x1234, 0xABCD};
  std::vector<float> f32(19 * 3);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = std::sin(static_cast<float>(i)) * 1000.0f;
  std::vector<SafetensorsTensor> in = {
      {"f32", F32({19, 3}, f32)},
      {"bf16", Make<uint16_t>({11}, bits16, DType::kBF16)},
      {"f16", Make<uint16_t>({1, 11}, bits16, DType::kF16)},
      {"i32", I32({2, 1, 2}, {INT32_MIN, -1, 0, INT32_MAX})},
      {"f64", Make<double>({3}, {1e300, -0.5, 1.0 / 3.0}, DType::kF64)},
      {"f32_as_bf16", F32({19, 3}, f32), "BF16"},
      {"f32_as_f16", F32({19, 3}, f32), "F16"},
      {"f32_explicit", F32({1}, {2.0f}), "F32"},
  };
  ASSERT_TRUE(WriteSafetensors(path, in, {{"a", "1"}, {"b", "2"}}).ok());
  EXPECT_THAT(ListDir(dir), ElementsAre("all.safetensors"));  // no temporary left behind

  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}}));
  for (const SafetensorsTensor& t : in) {
    if (t.dtype == "BF16" || t.dtype == "F16") continue;
    const SafetensorsEntry* e = f->Find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->shape, t.tensor.shape()) << t.name;
    absl::Span<const uint8_t> b = f->Bytes(*e);
    ASSERT_EQ(b.size(), t.tensor.nbytes()) << t.name;
    EXPECT_EQ(std::memcmp(b.data(), t.tensor.raw(), b.size()), 0) << t.name;
  }
  EXPECT_EQ(f->Find("bf16")->dtype, "BF16");
  EXPECT_EQ(f->Find("f16")->dtype, "F16");
  EXPECT_EQ(f->Find("f64")->dtype, "F64");
  EXPECT_EQ(f->Find("i32")->dtype, "I32");

  // Narrowed tensors hold exactly the conversion helpers' bits.
  for (const char* name : {"f32_as_bf16", "f32_as_f16"}) {
    const SafetensorsEntry* e = f->Find(name);
    ASSERT_NE(e, nullptr);
    bool bf = std::string(name) == "f32_as_bf16";
    EXPECT_EQ(e->dtype, bf ? "BF16" : "F16");
    absl::Span<const uint8_t> b = f->Bytes(*e);
    ASSERT_EQ(b.size(), f32.size() * 2);
    absl::StatusOr<Tensor> back = f->ReadAsF32(name);
    ASSERT_TRUE(back.ok());
    for (size_t i = 0; i < f32.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      ASSERT_EQ(h, bf ? cpu::F32ToBf16(f32[i]) : cpu::F32ToF16(f32[i])) << name << " " << i;
      ASSERT_EQ(back->data<float>()[i], bf ? cpu::Bf16ToF32(h) : cpu::F16ToF32(h));
    }
  }
  absl::StatusOr<Tensor> i32 = f->ReadAsF32("i32");
  ASSERT_TRUE(i32.ok());
  EXPECT_EQ(i32->data<int32_t>()[0], INT32_MIN);
  EXPECT_EQ(i32->data<int32_t>()[3], INT32_MAX);
  absl::StatusOr<Tensor> f64 = f->ReadAsF32("f64");
  ASSERT_TRUE(f64.ok());
  EXPECT_THAT(Floats(*f64), ElementsAre(INFINITY, -0.5f, 1.0f / 3.0f));
}

TEST_F(SafetensorsTest, EmptyFileHasNoTensorsAndNoMetadataKey) {
  std::string path = dir_ + "/e.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {}, {}).ok());
  EXPECT_EQ(ReadFile(path), MakeFile("{}      ", ""));  // HF: serialize({}) pads "{}" to 8
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->entries().empty());
  EXPECT_TRUE(f->metadata().empty());
}

TEST_F(SafetensorsTest, ReadsI64AsI32AndRejectsWhatDoesNotFit) {
  std::string path = dir_ + "/i64.safetensors";
  int64_t small[2] = {-5, 1LL << 30}, big[1] = {1LL << 40};
  std::string data(reinterpret_cast<char*>(small), 16);
  data += std::string(reinterpret_cast<char*>(big), 8) + "xyz";
  WriteFile(path, MakeFile(R"({"s":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                           R"("b":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},)"
                           R"("u":{"dtype":"U8","shape":[3],"data_offsets":[24,27]}})",
                           data));
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<Tensor> s = f->ReadAsF32("s");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->data<int32_t>()[0], -5);
  EXPECT_EQ(s->data<int32_t>()[1], 1 << 30);
  absl::StatusOr<Tensor> b = f->ReadAsF32("b");
  EXPECT_EQ(b.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(b.status().message(), HasSubstr("1099511627776"));
  absl::StatusOr<Tensor> u = f->ReadAsF32("u");
  EXPECT_EQ(u.status().code(), absl::StatusCode::kUnimplemented);
  absl::Span<const uint8_t> ub = f->Bytes(*f->Find("u"));
  EXPECT_EQ(std::string(ub.begin(), ub.end()), "xyz");
}

// ---- writer errors and atomicity

TEST_F(SafetensorsTest, WriterRejectsBadInputAndKeepsTheOldFile) {
  const std::string& dir = dir_;
  std::string path = dir + "/w.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"x", F32({1}, {1.0f})}}, {}).ok());
  std::string before = ReadFile(path);
  struct Case {
    std::vector<SafetensorsTensor> tensors;
    std::map<std::string, std::string> metadata;
    std::string error;
  };
  std::vector<Case> cases = {
      {{{"x", F32({1}, {1.0f})}, {"x", F32({1}, {2.0f})}}, {}, "tensor \"x\": name appears twice"},
      {{{"__metadata__", F32({1}, {1.0f})}}, {}, "name is reserved"},
      {{{"i", I32({1}, {1}), "BF16"}}, {}, "cannot write a I32 tensor as \"BF16\""},
      {{{"f", F32({1}, {1.0f}), "I64"}}, {}, "as \"I64\""},
      {{{"u", Tensor()}}, {}, "tensor \"u\": tensor is undefined"},
      {{{"bad\xff", F32({1}, {1.0f})}}, {}, "is not valid UTF-8"},
      {{{"y", F32({1}, {1.0f})}}, {{"k", "\xc3"}}, "metadata value"},
  };
  for (const Case& c : cases) {
    absl::Status s = WriteSafetensors(path, c.tensors, c.metadata);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.error;
    EXPECT_THAT(s.message(), HasSubstr(c.error));
    EXPECT_THAT(s.message(), HasSubstr(path));
    EXPECT_EQ(ReadFile(path), before) << c.error;
  }
  EXPECT_THAT(ListDir(dir), ElementsAre("w.safetensors"));

  absl::Status s = WriteSafetensors(dir + "/no/such/dir/w.safetensors", {{"x", F32({1}, {1.0f})}}, {});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/no/such/dir/w.safetensors.tmp."));

  // A successful write replaces the old file whole.
  ASSERT_TRUE(WriteSafetensors(path, {{"z", F32({2}, {3.0f, 4.0f})}}, {}).ok());
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->Find("x"), nullptr);
  EXPECT_THAT(Floats(*f->ReadAsF32("z")), ElementsAre(3.0f, 4.0f));
}

// ---- corrupt files

TEST_F(SafetensorsTest, OpenNamesAMissingFile) {
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open("/nonexistent/m.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/m.safetensors"));
}

TEST_F(SafetensorsTest, CorruptFilesGiveOneLineErrorsNamingFileAndTensor) {
  const std::string kData8(8, '\0');
  struct Case {
    const char* what;
    std::string file;
    std::string error;  // expected substring
  };
  std::vector<Case> cases = {
      {"too small", "abc", "too small for the 8-byte header length"},
      {"huge header length", MakeFile("{}", "", int64_t{1} << 40), "exceeds the 100 MB limit"},
      {"header past the end", MakeFile("{}", "", 100), "header length 100 runs past the end of the file (10 bytes)"},
      {"not JSON", MakeFile("{\"a\":", ""), "header is not valid JSON"},
      {"NUL in header", MakeFile(std::string("{}\0", 3), ""), "header is not valid JSON"},
      {"invalid UTF-8", MakeFile("{\"\xff\":1}", ""), "header is not valid JSON"},
      {"not an object", MakeFile("[1,2]", ""), "header is a JSON array, not an object"},
      {"entry not object", MakeFile(R"({"w":5})", ""), "tensor \"w\": entry is a JSON number"},
      {"unknown dtype", MakeFile(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", kData8),
       "tensor \"w\": unknown dtype \"F33\""},
      {"missing dtype", MakeFile(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", kData8), "missing string field \"dtype\""},
      {"missing shape", MakeFile(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", kData8), "missing array field \"shape\""},
      {"negative dim", MakeFile(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", kData8),
       "tensor \"w\": shape [-2] has a non-integer or negative dimension"},
      {"float dim", MakeFile(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", kData8), "non-integer"},
      {"dim over int64", MakeFile(R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]}})", kData8),
       "is too large"},
      {"product overflow",
       MakeFile(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", kData8),
       "tensor \"w\": shape [4611686018427387904, 4] overflows"},
      {"overflow beside a zero dim",
       MakeFile(R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", ""),
       "shape [0, 4294967296, 4294967296] overflows"},
      {"size mismatch", MakeFile(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", kData8),
       "tensor \"w\": data_offsets [0, 8] hold 8 bytes but F32[3] needs 12"},
      {"offsets not a pair", MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", kData8),
       "\"data_offsets\" must be [begin, end]"},
      {"negative offset", MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", kData8),
       "\"data_offsets\" must be"},
      {"hole at start", MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", kData8),
       "tensor \"w\": data_offsets [4, 8] should start at 0"},
      {"overlap",
       MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                kData8),
       "tensor \"b\": data_offsets [4, 8] should start at 8"},
      {"hole between",
       MakeFile(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                kData8),
       "tensor \"b\": data_offsets [4, 6] should start at 2"},
      {"end before begin",
       MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", kData8),
       "tensor \"v\": data_offsets [8, 4] end before they begin"},
      {"huge size", MakeFile(R"({"v":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551615]}})", kData8),
       "data_offsets [0, 18446744073709551615] hold 18446744073709551615 bytes but U8[1] needs 1"},
      {"beyond buffer", MakeFile(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", kData8),
       "data buffer is 8 bytes but the tensors cover 16 (truncated file?)"},
      {"trailing bytes", MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", kData8),
       "data buffer is 8 bytes but the tensors cover 4 (trailing bytes)"},
      {"duplicate tensor", MakeFile(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", kData8),
       "header has duplicate key \"w\""},
      {"duplicate field", MakeFile(R"({"w":{"dtype":"U8","dtype":"U8","shape":[8],"data_offsets":[0,8]}})", kData8),
       "duplicate key \"dtype\""},
      {"metadata not strings", MakeFile(R"({"__metadata__":{"k":1}})", ""), "\"__metadata__\" value of \"k\" is not a string"},
      {"metadata array", MakeFile(R"({"__metadata__":["k"]})", ""), "\"__metadata__\" must be an object"},
      {"sub-byte tensor", MakeFile(R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", "\0\0"),
       "tensor \"w\": F4 tensor does not fill whole bytes"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<SafetensorsHeader> h = ParseSafetensors(AsSpan(c.file), "bad.safetensors");
    ASSERT_FALSE(h.ok()) << c.what;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(h.status().message(), HasSubstr("bad.safetensors: ")) << c.what;
    EXPECT_THAT(h.status().message(), HasSubstr(c.error)) << c.what;
    EXPECT_THAT(h.status().message(), ::testing::Not(HasSubstr("\n"))) << c.what;
  }
  // Through Open too, with the real path in the message.
  std::string path = dir_ + "/bad.safetensors";
  WriteFile(path, cases[4].file);
  absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
  EXPECT_THAT(f.status().message(), HasSubstr(path + ": header is not valid JSON"));
}

TEST_F(SafetensorsTest, AcceptsWhatTheReferenceAccepts) {
  // Positive controls for the table above: the reference reads all of these.
  const std::string kData8(8, '\x01');
  std::vector<std::pair<const char*, std::string>> ok = {
      {"empty", MakeFile("{}", "")},
      {"null metadata", MakeFile(R"({"__metadata__":null})", "")},
      {"whitespace", MakeFile(" \n{ } \t ", "")},
      {"unknown field", MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":[1]}})", kData8)},
      {"-0 offset", MakeFile(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-0,8]}})", kData8)},
      {"listed out of order",
       MakeFile(R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})",
                kData8)},
      {"empty tensors anywhere",
       MakeFile(R"({"z":{"dtype":"F64","shape":[0],"data_offsets":[8,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]}})",
                kData8)},
      {"F4 pairs", MakeFile(R"({"w":{"dtype":"F4","shape":[16],"data_offsets":[0,8]}})", kData8)},
  };
  for (const auto& [what, file] : ok) {
    absl::StatusOr<SafetensorsHeader> h = ParseSafetensors(AsSpan(file), "ok.safetensors");
    EXPECT_TRUE(h.ok()) << what << ": " << h.status();
  }
  absl::StatusOr<SafetensorsHeader> h = ParseSafetensors(AsSpan(ok[5].second), "ok.safetensors");
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->entries.size(), 2u);
  EXPECT_EQ(h->entries[0].name, "a");  // buffer order
  EXPECT_EQ(h->entries[1].begin, 4u);
  EXPECT_EQ(h->data_start, 8 + ok[5].second.size() - 16);
  h = ParseSafetensors(AsSpan(ok[6].second), "ok.safetensors");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->entries[0].name, "e");
  EXPECT_EQ(h->entries[1].name, "w");
  EXPECT_EQ(h->entries[2].name, "z");
}

TEST_F(SafetensorsTest, EveryTruncationOfAValidFileIsAnError) {
  std::string golden = ReadFile(kGolden);
  ASSERT_FALSE(golden.empty());
  std::string path = dir_ + "/t.safetensors";
  for (size_t len = 0; len < golden.size(); ++len) {
    WriteFile(path, golden.substr(0, len));
    absl::StatusOr<SafetensorsFile> f = SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok()) << "prefix of " << len << " bytes was accepted";
    ASSERT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << len << ": " << f.status();
  }
  WriteFile(path, golden);
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
}

// Every outcome of a mutated file is OK or InvalidArgument; an accepted file
// must describe a buffer inside the image (checked here, not trusted).
void ExpectSane(const std::string& image, const absl::StatusOr<SafetensorsHeader>& h, const std::string& what) {
  if (!h.ok()) {
    ASSERT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << what << ": " << h.status();
    return;
  }
  for (const SafetensorsEntry& e : h->entries) {
    ASSERT_LE(e.begin, e.end) << what;
    ASSERT_LE(h->data_start + e.end, image.size()) << what;
  }
}

TEST_F(SafetensorsTest, HeaderByteFlipsNeverCrash) {
  std::string golden = ReadFile(kGolden);
  ASSERT_FALSE(golden.empty());
  int accepted = 0;
  for (size_t i = 0; i < 8 + 0x238; ++i) {  // the length field and the header
    for (uint8_t mask : {0x01, 0x20, 0x80, 0xFF}) {
      std::string m = golden;
      m[i] = static_cast<char>(m[i] ^ mask);
      absl::StatusOr<SafetensorsHeader> h = ParseSafetensors(AsSpan(m), "flip");
      ExpectSane(m, h, absl::StrCat("byte ", i, " ^ ", mask));
      accepted += h.ok();
    }
  }
  // Some flips stay valid (a letter's case in a name or in metadata); most do not.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, 4 * (8 + 0x238) / 2);
}

TEST_F(SafetensorsTest, SeededRandomMutationsNeverCrash) {
  std::string golden = ReadFile(kGolden);
  ASSERT_FALSE(golden.empty());
  std::mt19937_64 rng(20240611);
  const std::string kInteresting[] = {"0", "9", "-", "[", "]", "{", "}", "\"", ",", ":", "\\", "\xff",
                                      "18446744073709551615", "4294967296", "F4", "__metadata__"};
  for (int iter = 0; iter < 10000; ++iter) {
    std::string m = golden;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !m.empty(); ++k) {
      size_t pos = rng() % m.size();
      switch (rng() % 5) {
        case 0: m[pos] = static_cast<char>(rng()); break;
        case 1: m.erase(pos, 1 + rng() % 8); break;
        case 2: m.insert(pos, kInteresting[rng() % std::size(kInteresting)]); break;
        case 3: m.resize(pos); break;
        case 4: m[pos] = kInteresting[rng() % std::size(kInteresting)][0]; break;
      }
    }
    absl::StatusOr<SafetensorsHeader> h = ParseSafetensors(AsSpan(m), "mutant");
    ExpectSane(m, h, absl::StrCat("iteration ", iter));
  }
}

}  // namespace
}  // namespace baton
