// SwiGLU on the CPU: h = silu(gate) · up, silu(g) = g · sigmoid(g).
// Pure elementwise; the backward recomputes sigmoid(gate) rather than
// storing it (one exp per element is cheaper than another (N, F) buffer).
#pragma once

#include <cstdint>

namespace baton::cpu {

// gate, up, h: n elements.
template <typename T>
void SwiGluForward(const T* gate, const T* up, int64_t n, T* h);
// dgate, dup overwritten.
template <typename T>
void SwiGluBackward(const T* dh, const T* gate, const T* up, int64_t n, T* dgate, T* dup);

}  // namespace baton::cpu
