// A parameter's initial values written on its GPU: the same bits the host
// fills of runtime/rng.h would give (Philox4x32-10 keyed by (seed, name),
// counter = logical index, kernels/philox_normal.h on both sides), drawn in
// place instead of on the host and copied up. Model::Init on CUDA calls
// InitParamOnDevice once per parameter; a tensor-parallel shard gets its
// block of the logical tensor, as on the CPU.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "runtime/param.h"

namespace baton {

// How a parameter starts: a constant (norm weights 1, biases 0) or
// std · N(0, 1) from the (seed, name) stream.
struct ParamInit {
  enum class Kind { kConstant, kNormal };
  Kind kind = Kind::kConstant;
  float value = 0;  // kConstant: the value; kNormal: the standard deviation

  static ParamInit Constant(float v) { return {Kind::kConstant, v}; }
  static ParamInit Normal(float std) { return {Kind::kNormal, std}; }
};

// Fills p.value (f32, contiguous, on CUDA) on the current stream
// (kernels/cuda/stream.h): the whole logical tensor when p.shard_dim < 0,
// else the block [shard_offset, shard_offset + size) along shard_dim of the
// logical (R, C) p.full_shape. Asynchronous: work that reads p.value on
// another stream must wait for this one. FailedPrecondition for a tensor
// that is not f32 on CUDA (or a build without CUDA), InvalidArgument for a
// shard that is not a 2-D block of full_shape.
absl::Status InitParamOnDevice(Param& p, ParamInit init, uint64_t seed);

}  // namespace baton
