// Rotary position embedding on the CPU, HF "rotate_half" layout: in a head
// of dimension D, element i (< D/2) pairs with i + D/2 and both rotate by
// angle = t · theta^(-2i/D) for position t. Angles are computed in double
// and rounded to T once, so f32 and f64 differ only by that rounding.
// The backward is the same rotation by −angle (inverse = true).
#pragma once

#include <cstdint>

namespace baton::cpu {

// x (b, t, h, d) rotated in place; d even.
template <typename T>
void RopeRotate(T* x, int64_t b, int64_t t, int64_t h, int64_t d, double theta, bool inverse);

}  // namespace baton::cpu
