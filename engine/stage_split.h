// Where the pipeline cuts the model: the layers of each model part, so that
// the costliest part (which sets the pipeline's pace) is as cheap as it can
// be. A pure function of the model shape, tested without any rank.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model.h"
#include "runtime/model_config.h"

namespace baton {

// Part i of `parts`: embedding on part 0, head on the last; layers either
// as `layers_per_part` says, or split to balance the estimated cost of a
// part (its layers' training flops, plus the lm head's and loss's on the
// last part: with a large vocabulary the head weighs several layers, so the
// last stage gets fewer), ties broken towards earlier parts.
std::vector<ModelSlice> SplitLayers(const ModelConfig& model, int parts, int64_t seq,
                                    const std::vector<int>& layers_per_part = {});
// Forward flops per token of one decoder layer, and of the lm head + loss,
// at sequence length seq (the balance's cost estimate).
double LayerFlopsPerToken(const ModelConfig& model, int64_t seq);
double HeadFlopsPerToken(const ModelConfig& model);

}  // namespace baton
