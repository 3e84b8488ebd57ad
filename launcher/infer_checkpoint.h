// What `baton infer` loads from a checkpoint: the model (any baton
// checkpoint — trained, or made by `baton import --hf`), its tokenizer
// (tokenizer.json kept by the import, else the data.tokenizer the model
// was trained with: "byte" or a tokenizer.json path) and its context
// length. A checkpoint directory (checkpoint.dir) means its latest file.
// Under tp and pp a rank loads only its part: stage pp_rank of SplitLayers
// (the cut training makes) and its tp slice of each weight, reading one
// whole weight at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

namespace baton {

struct InferModel {
  std::string path;  // the file read
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;
  int64_t context = 0;  // HF max_position_embeddings, else the training seq_len
  int64_t step = 0;
};

// dtype: kF32 or kF64 on the CPU; kF32 or kBF16 (compute) on CUDA, where
// the current device gets the weights. Errors name the file.
// pp/pp_rank: the pipeline stages and this rank's; tp: this rank's tensor
// parallelism (its comm must outlive the model).
absl::StatusOr<InferModel> LoadInferModel(const std::string& checkpoint, DType dtype, Device device = Device::kCpu,
                                          int pp = 1, int pp_rank = 0, TensorParallel tp = {});

}  // namespace baton
