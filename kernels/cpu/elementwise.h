// Elementwise arithmetic and full reductions on the CPU: residual adds,
// gradient scaling, and the sums behind the loss and the gradient norm.
// Reductions accumulate in double over fixed 4096-element chunks whose
// partial sums are then added in chunk order, so the bits are the same
// for any thread count.
#pragma once

#include <cstdint>

namespace baton::cpu {

template <typename T>
void Add(const T* a, const T* b, int64_t n, T* out);  // out may alias a or b
template <typename T>
void AddInPlace(T* y, const T* x, int64_t n);  // y += x
template <typename T>
void Scale(T* x, int64_t n, T s);  // x *= s
template <typename T>
double SumSquares(const T* x, int64_t n);
template <typename T>
double Sum(const T* x, int64_t n);

}  // namespace baton::cpu
