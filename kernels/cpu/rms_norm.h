// RMSNorm (HF Llama) on the CPU: y = (x · rstd) · w with
// rstd = 1/sqrt(mean(x²) + eps) per row. The forward saves rstd so the
// backward needs no second pass over x for the statistics. Rows are
// independent (threaded over rows); dw is a column reduction done per
// column block in row order, so the bits never depend on the thread count.
#pragma once

#include <cstdint>

namespace baton::cpu {

// x, y (n, c); w (c); rstd (n).
template <typename T>
void RmsNormForward(const T* x, const T* w, T eps, int64_t n, int64_t c, T* y, T* rstd);

// dx (n, c) overwritten with the norm's input gradient plus dres (n, c) when
// dres is non-null (a residual branch's gradient: the add is fused into this
// pass; dres may alias dx); dw (c) accumulated (+=).
template <typename T>
void RmsNormBackward(const T* dy, const T* x, const T* w, const T* rstd, int64_t n, int64_t c,
                     const T* dres, T* dx, T* dw);

}  // namespace baton::cpu
