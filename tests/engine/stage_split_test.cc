// How the model is cut into pipeline parts: every layer exactly once, each
// part at least one layer, embedding first and head last; a tiny vocabulary
// splits evenly, a large one gives the head's stage fewer layers (its lm
// head weighs several layers); an explicit parallel.layers_per_stage wins.
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "engine/stage_split.h"

namespace baton {
namespace {

ModelConfig Model(int layers, int dim, int heads, int ffn, int vocab) {
  ModelConfig m;
  m.layers = layers;
  m.dim = dim;
  m.heads = heads;
  m.kv_heads = heads;
  m.ffn_dim = ffn;
  m.vocab_size = vocab;
  return m;
}

std::vector<int> Counts(const std::vector<ModelSlice>& slices) {
  std::vector<int> out;
  int next = 0;
  for (size_t i = 0; i < slices.size(); ++i) {
    EXPECT_EQ(slices[i].first_layer, next);
    EXPECT_EQ(slices[i].embedding, i == 0);
    EXPECT_EQ(slices[i].head, i + 1 == slices.size());
    out.push_back(slices[i].last_layer - slices[i].first_layer);
    EXPECT_GE(out.back(), 1);
    next = slices[i].last_layer;
  }
  return out;
}

TEST(SplitLayers, SmallVocabularySplitsEvenly) {
  const ModelConfig tiny = Model(4, 128, 4, 352, 258);
  EXPECT_EQ(Counts(SplitLayers(tiny, 2, 128)), (std::vector<int>{2, 2}));
  EXPECT_EQ(Counts(SplitLayers(tiny, 4, 128)), (std::vector<int>{1, 1, 1, 1}));
}

TEST(SplitLayers, LargeVocabularyLightensTheLastStage) {
  const ModelConfig m = Model(12, 768, 12, 2048, 32000);  // the 125M benchmark model
  const double head_in_layers = HeadFlopsPerToken(m) / LayerFlopsPerToken(m, 1024);
  EXPECT_GT(head_in_layers, 2.0);
  const std::vector<int> counts = Counts(SplitLayers(m, 4, 1024));
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0), 12);
  EXPECT_LT(counts.back(), counts.front());
  // Its costliest part is cheaper than the even 3/3/3/3 split's (3 layers + head).
  const double layer = LayerFlopsPerToken(m, 1024), head = HeadFlopsPerToken(m);
  double worst = 0;
  for (size_t i = 0; i < counts.size(); ++i) worst = std::max(worst, counts[i] * layer + (i == 3 ? head : 0));
  EXPECT_LT(worst, 0.9 * (3 * layer + head));
}

TEST(SplitLayers, ExplicitLayersPerStageWin) {
  const ModelConfig m = Model(6, 64, 4, 128, 258);
  EXPECT_EQ(Counts(SplitLayers(m, 3, 64, {1, 3, 2})), (std::vector<int>{1, 3, 2}));
}

}  // namespace
}  // namespace baton
