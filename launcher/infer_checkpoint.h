// What `baton infer` loads from a checkpoint: the model (any baton
// checkpoint — trained, or made by `baton import --hf`), its tokenizer
// (tokenizer.json kept by the import, else the data.tokenizer the model
// was trained with: "byte" or a tokenizer.json path) and its context
// length. A checkpoint directory (checkpoint.dir) means its latest file.
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
absl::StatusOr<InferModel> LoadInferModel(const std::string& checkpoint, DType dtype, Device device = Device::kCpu);

}  // namespace baton
