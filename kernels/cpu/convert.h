// Bit-exact conversions between f32 and the two 16-bit float formats,
// bf16 and IEEE-754 binary16 (f16). Checkpoint export (safetensors) and the
// CUDA backend's host-side staging both use these, so every path that
// narrows f32 rounds the same way: round-to-nearest-even, overflow to ±inf,
// f16 subnormals kept (never flushed), NaN stays NaN with its sign and the
// top payload bits (made quiet). Widening (16 -> 32) is exact.
#pragma once

#include <cstdint>

namespace baton::cpu {

float Bf16ToF32(uint16_t h);  // exact
uint16_t F32ToBf16(float f);  // round-to-nearest-even
float F16ToF32(uint16_t h);   // exact, subnormals included
uint16_t F32ToF16(float f);   // round-to-nearest-even, |f| >= 65520 -> inf

// Array versions; `in` and `out` must not overlap.
void Bf16ToF32(const uint16_t* in, int64_t n, float* out);
void F32ToBf16(const float* in, int64_t n, uint16_t* out);
void F16ToF32(const uint16_t* in, int64_t n, float* out);
void F32ToF16(const float* in, int64_t n, uint16_t* out);

}  // namespace baton::cpu
