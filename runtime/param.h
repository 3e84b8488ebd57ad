// Param: one named, trainable tensor with its gradient, shared by the model
// (which owns and fills them), the optimizer (which updates them) and the
// checkpoints (which store them under `name` at their full logical shape).
// Invariant: grad has value's shape and dtype; grads accumulate (+=) across
// micro-batches until ZeroGrad.
#pragma once

#include <string>

#include "runtime/tensor.h"

namespace baton {

struct Param {
  std::string name;  // logical HF-like name: "layers.3.attn.wq"
  Tensor value;
  Tensor grad;
  bool decay = true;  // AdamW weight decay applies; false for norms and biases
};

}  // namespace baton
