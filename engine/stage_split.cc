// The min-max layer split of the pipeline (see stage_split.h).
#include "engine/stage_split.h"

#include <algorithm>

namespace baton {

double LayerFlopsPerToken(const ModelConfig& m, int64_t seq) {
  const double c = m.dim, d = m.dim / m.heads, h = m.heads, kv = m.kv_heads, f = m.ffn_dim;
  const double gemm = 2 * (c * h * d + 2 * c * kv * d + h * d * c + 3 * c * f);
  const double attention = 2 * h * d * static_cast<double>(seq);  // causal: half of 4·T·H·D
  return gemm + attention;
}

double HeadFlopsPerToken(const ModelConfig& m) { return 2.0 * m.dim * m.vocab_size + 5.0 * m.vocab_size; }

std::vector<ModelSlice> SplitLayers(const ModelConfig& model, int parts, int64_t seq,
                                    const std::vector<int>& layers_per_part) {
  const int layers = model.layers;
  std::vector<int> count(parts, 0);
  if (!layers_per_part.empty()) {
    count = layers_per_part;
  } else {
    // Contiguous partition minimising the costliest part (min-max linear
    // partition by dynamic programming; parts ≤ layers, tiny sizes).
    const double layer = LayerFlopsPerToken(model, seq), head = HeadFlopsPerToken(model);
    const double inf = 1e300;
    // best[i][j]: least max cost putting layers [0, j) into parts [0, i).
    std::vector<std::vector<double>> best(parts + 1, std::vector<double>(layers + 1, inf));
    std::vector<std::vector<int>> cut(parts + 1, std::vector<int>(layers + 1, 0));
    best[0][0] = 0;
    for (int i = 1; i <= parts; ++i) {
      for (int j = i; j <= layers - (parts - i); ++j) {
        for (int k = i - 1; k < j; ++k) {  // part i-1 holds layers [k, j)
          if (best[i - 1][k] >= inf) continue;
          const double cost = (j - k) * layer + (i == parts ? head : 0);
          const double worst = std::max(best[i - 1][k], cost);
          if (worst < best[i][j] - 1e-9 * worst) {
            best[i][j] = worst;
            cut[i][j] = k;
          }
        }
      }
    }
    for (int i = parts, j = layers; i > 0; --i) {
      count[i - 1] = j - cut[i][j];
      j = cut[i][j];
    }
  }
  std::vector<ModelSlice> out;
  int first = 0;
  for (int i = 0; i < parts; ++i) {
    out.push_back({first, first + count[i], i == 0, i == parts - 1});
    first += count[i];
  }
  return out;
}

}  // namespace baton
