// Param: one named, trainable tensor with its gradient, shared by the model
// (which owns and fills them), the optimizer (which updates them) and the
// checkpoints (which store them under `name` at their full logical shape).
// Invariant: grad has value's shape and dtype; grads accumulate (+=) across
// micro-batches until ZeroGrad; where `compute` is defined it holds value
// rounded to its dtype whenever a forward runs (the optimizer refreshes it).
#pragma once

#include <string>

#include "runtime/tensor.h"

namespace baton {

struct Param {
  std::string name;  // logical HF-like name: "layers.3.attn.wq"
  Tensor value;    // master weights: f32 (f64 in gradient checks)
  Tensor grad;     // value's shape and dtype
  Tensor compute;  // value in the compute dtype (bf16 on CUDA) or undefined: value is read
  bool decay = true;  // AdamW weight decay applies; false for norms and biases
  // Tensor parallelism: the logical tensor and which slice of it this is.
  Shape full_shape;          // logical shape (value's shape when not sharded)
  int shard_dim = -1;        // -1: the whole tensor (replicated on every tp rank)
  int64_t shard_offset = 0;  // start of this slice along shard_dim
  // The grad is this tp rank's partial sum (sequence-parallel norm weights
  // saw only its tokens): the trainer sums it over tp before the optimizer.
  bool tp_sum_grad = false;
};

}  // namespace baton
