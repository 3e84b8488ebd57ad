// Token sampling: greedy is the argmax; the same (seed, position) always
// draws the same token and other seeds draw others; top-k and top-p cut the
// support exactly; the draw frequencies follow softmax(logits / T); a row's
// token does not depend on the other rows of the batch; stop strings are
// found across appended pieces.
#include "runtime/token_sampling.h"

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace baton {
namespace {

std::vector<double> Logits(int64_t V, uint64_t seed) {
  std::vector<double> x(V);
  for (int64_t i = 0; i < V; ++i) x[i] = std::sin(static_cast<double>(i * 7 + seed * 13)) * 3.0;
  return x;
}

TEST(TokenSampling, GreedyIsArgmaxWithLowestIdOnTies) {
  std::vector<double> x = {0.5, 2.0, -1.0, 2.0};
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(SampleToken(x.data(), 4, p, 0), 1);
  p.temperature = 1;
  p.top_k = 1;  // top-1 sampling is greedy too, whatever the draw
  for (int pos = 0; pos < 20; ++pos) EXPECT_EQ(SampleToken(x.data(), 4, p, pos), 1);
}

TEST(TokenSampling, DeterministicPerSeedAndPosition) {
  const std::vector<double> x = Logits(101, 1);
  SamplingParams p;
  p.temperature = 1.3;
  p.seed = 42;
  std::vector<int32_t> a, b, c;
  for (int pos = 0; pos < 64; ++pos) {
    a.push_back(SampleToken(x.data(), 101, p, pos));
    b.push_back(SampleToken(x.data(), 101, p, pos));
  }
  p.seed = 43;
  for (int pos = 0; pos < 64; ++pos) c.push_back(SampleToken(x.data(), 101, p, pos));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 5u);  // it does sample
  EXPECT_NE(SamplingUniform(1, 0), SamplingUniform(1, 1));
  EXPECT_NE(SamplingUniform(1, 0), SamplingUniform(2, 0));
}

TEST(TokenSampling, TopKAndTopPCutTheSupport) {
  const std::vector<double> x = {0.0, 3.0, 2.5, -4.0, 2.9, 1.0};  // order: 1, 4, 2, 5, 0, 3
  SamplingParams p;
  p.top_k = 3;
  std::set<int32_t> seen;
  for (int pos = 0; pos < 400; ++pos) seen.insert(SampleToken(x.data(), 6, p, pos));
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2, 4}));
  // softmax: p1 ≈ 0.376, p4 ≈ 0.340: top_p 0.5 keeps exactly {1, 4}.
  p.top_k = 0;
  p.top_p = 0.5;
  seen.clear();
  for (int pos = 0; pos < 400; ++pos) seen.insert(SampleToken(x.data(), 6, p, pos));
  EXPECT_EQ(seen, (std::set<int32_t>{1, 4}));
  p.top_p = 1e-9;  // just the most likely
  for (int pos = 0; pos < 50; ++pos) EXPECT_EQ(SampleToken(x.data(), 6, p, pos), 1);
}

TEST(TokenSampling, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<double> x = {1.0, 0.0, -1.0, 0.5};
  SamplingParams p;
  p.temperature = 0.7;
  p.seed = 5;
  const int n = 40000;
  std::map<int32_t, int> count;
  for (int pos = 0; pos < n; ++pos) ++count[SampleToken(x.data(), 4, p, pos)];
  double z = 0;
  for (double v : x) z += std::exp(v / 0.7);
  for (int i = 0; i < 4; ++i) {
    const double want = std::exp(x[i] / 0.7) / z;
    // 5 standard deviations of a binomial frequency.
    EXPECT_NEAR(count[i] / static_cast<double>(n), want, 5 * std::sqrt(want * (1 - want) / n)) << "token " << i;
  }
}

TEST(TokenSampling, ARowDoesNotDependOnItsBatchMates) {
  const int64_t V = 37;
  SamplingParams mine;
  mine.temperature = 0.9;
  mine.top_p = 0.95;
  mine.seed = 7;
  const std::vector<double> row = Logits(V, 3);
  Tensor alone = Tensor::Empty({1, V}, DType::kF64);
  std::copy(row.begin(), row.end(), alone.data<double>());
  Tensor crowd = Tensor::Empty({5, V}, DType::kF64);
  std::vector<SamplingParams> params(5);
  for (int r = 0; r < 5; ++r) {
    const std::vector<double> other = r == 3 ? row : Logits(V, 10 + r);
    std::copy(other.begin(), other.end(), crowd.data<double>() + r * V);
    params[r].seed = 100 + r;
    params[r].top_k = r;
  }
  params[3] = mine;
  for (int64_t pos = 0; pos < 30; ++pos) {
    const std::vector<int32_t> a = SampleTokens(alone, {mine}, {pos});
    const std::vector<int32_t> b = SampleTokens(crowd, params, {0, 9, 4, pos, 2});
    EXPECT_EQ(a[0], b[3]) << "position " << pos;
  }
}

TEST(TokenSampling, ValidateNamesTheField) {
  SamplingParams p;
  p.top_p = 1.5;
  EXPECT_NE(std::string(p.Validate().message()).find("top_p=1.5"), std::string::npos);
  p = {};
  p.temperature = -1;
  EXPECT_NE(std::string(p.Validate().message()).find("temperature=-1"), std::string::npos);
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
}

TEST(StopStrings, FoundAcrossPiecesAndEarliestWins) {
  const std::vector<std::string> stops = {"\n\n", "END"};
  std::string text = "hello E";
  EXPECT_EQ(FindStop(text, stops, 0), std::string::npos);
  const size_t old = text.size();
  text += "ND and\n\n";
  EXPECT_EQ(FindStop(text, stops, old), 6u);  // "END" spans the two pieces
  EXPECT_EQ(FindStop("ab\n\ncEND", stops, 0), 2u);
  EXPECT_EQ(FindStop("abc", {""}, 0), std::string::npos);  // empty stop strings are ignored
}

}  // namespace
}  // namespace baton
