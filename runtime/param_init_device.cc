// InitParamOnDevice (param_init_device.h): maps a Param and its shard onto
// the region arguments of kernels/cuda/philox_init.h, as runtime/rng.cc's
// FillNormal / FillNormal2D map them for the host.
#include "runtime/param_init_device.h"

#include "absl/strings/str_cat.h"
#include "runtime/rng.h"
#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/philox_init.h"
#include "kernels/cuda/stream.h"
#endif

namespace baton {

absl::Status InitParamOnDevice(Param& p, ParamInit init, uint64_t seed) {
  const Tensor& v = p.value;
  if (!v.defined() || v.device() != Device::kCuda || v.dtype() != DType::kF32 || !v.is_contiguous()) {
    return absl::FailedPreconditionError(
        absl::StrCat("InitParamOnDevice(", p.name, "): needs a contiguous f32 CUDA tensor, got ",
                     v.defined() ? v.DebugString() : std::string("none")));
  }
#ifdef BATON_HAVE_CUDA
  cudaStream_t stream = cuda::CurrentStream();
  float* dst = static_cast<float*>(v.raw());
  if (init.kind == ParamInit::Kind::kConstant) return cuda::ConstantFill(dst, v.numel(), init.value, stream);
  const uint64_t hash = Fnv1a64(p.name);
  if (p.shard_dim < 0) {  // one row of numel elements from logical index 0, as FillNormal
    return cuda::PhiloxNormalFill(dst, 1, v.numel(), 0, 0, 0, seed, hash, init.value, stream);
  }
  const int d = p.shard_dim;
  if (v.rank() != 2 || p.full_shape.size() != 2 || d > 1 || p.shard_offset < 0 ||
      p.shard_offset + v.dim(d) > p.full_shape[d] || v.dim(1 - d) != p.full_shape[1 - d]) {
    return absl::InvalidArgumentError(absl::StrCat("InitParamOnDevice(", p.name, "): shard of dim ", p.shard_dim,
                                                   " at ", p.shard_offset, " is not a block of the logical tensor (",
                                                   v.DebugString(), ")"));
  }
  const int64_t row0 = p.shard_dim == 0 ? p.shard_offset : 0, col0 = p.shard_dim == 1 ? p.shard_offset : 0;
  return cuda::PhiloxNormalFill(dst, v.dim(0), v.dim(1), p.full_shape[1], row0, col0, seed, hash, init.value, stream);
#else
  return absl::FailedPreconditionError("InitParamOnDevice: built without CUDA");
#endif
}

}  // namespace baton
