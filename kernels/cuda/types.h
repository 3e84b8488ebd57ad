// Element types the CUDA kernels take, as seen from host code that must not
// depend on CUDA's bf16 header (the op table passes void* plus this tag).
// Kernels compute in fp32 whatever the storage type.
#pragma once

#include <cstdint>

namespace baton::cuda {

enum class Float : uint8_t { kF32, kBF16 };

inline const char* FloatName(Float t) { return t == Float::kF32 ? "f32" : "bf16"; }

}  // namespace baton::cuda
