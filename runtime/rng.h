// Counter-based random numbers for parameter initialisation: the value of
// element i of parameter `name` is a pure function of (seed, name, i), via
// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
// 1, 2, 3"). Key = FNV-1a-64(name); counter = (i / 2, seed). Because no
// state is carried from element to element, any shard of a parameter (a
// tensor-parallel row or column slice, a pipeline stage's layers) is filled
// with exactly the values the full tensor would hold there, so every
// (dp, pp, tp) layout starts from the same weights (DESIGN.md invariant 1).
// The draw (kernels/philox_normal.h) uses only correctly rounded IEEE
// operations, so the device fill (kernels/cuda/philox_init.h, used by
// runtime/param_init_device.h) gives the same bits as these host fills.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "runtime/tensor.h"

namespace baton {

// Random123 Philox4x32 with 10 rounds; counter (4 words) and key (2 words)
// in Random123's word order, so its known-answer vectors apply unchanged.
std::array<uint32_t, 4> Philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// FNV-1a, 64-bit: a hash of parameter names that never changes between
// builds or platforms (std::hash gives no such promise).
// `h` continues a running hash, so a long input can be hashed in pieces.
inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;
uint64_t Fnv1a64(std::string_view s, uint64_t h = kFnv1aOffset);

// The standard normal sample for logical element `index` of the stream
// (seed, name_hash). Box–Muller on two 53-bit uniforms from one Philox
// block; the block's two outputs (cos and sin branch) go to elements
// 2j and 2j+1. log, cos and sin are philox_normal.h's own (not libm's).
double NormalAt(uint64_t seed, uint64_t name_hash, uint64_t index);

// Fills t (any shape, f32 or f64, contiguous) with std · N(0,1), element e
// of t taking logical index logical_offset + e. A row-sharded slice of a
// logical (R, C) parameter starting at row r0 passes logical_offset = r0·C.
void FillNormal(Tensor& t, uint64_t seed, std::string_view name, float std,
                int64_t logical_offset = 0);

// Fills t (rows, cols) with the region [row0, row0+rows) × [col0, col0+cols)
// of the logical (·, logical_cols) parameter `name`: column-parallel and
// row-parallel linear shards alike.
void FillNormal2D(Tensor& t, uint64_t seed, std::string_view name, float std,
                  int64_t logical_cols, int64_t row0, int64_t col0);

}  // namespace baton
