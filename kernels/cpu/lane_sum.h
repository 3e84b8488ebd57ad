// Fixed-order sums for the CPU kernels' inner loops. A plain `s += x[i]`
// loop cannot be vectorised without reassociation (we build without
// -ffast-math); these keep 8 partial sums in a fixed pattern instead, so
// they vectorise and their rounding depends only on n, never on threads
// or call site: forward and backward see the same bits.
#pragma once

#include <cstdint>

namespace baton::cpu {

template <typename T>
inline T LaneSum(const T* x, int64_t n) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[i + l];
  T tail = T(0);
  for (; i < n; ++i) tail += x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <typename T>
inline T LaneDot(const T* a, const T* b, int64_t n) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  T tail = T(0);
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

}  // namespace baton::cpu
