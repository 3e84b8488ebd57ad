// FlashAttention-2 (Dao 2023) for causal grouped-query attention in bf16 on
// sm_80+ tensor cores (mma.sync m16n8k16, fp32 accumulate), head dim 64 or
// 128. Header-only and free of Abseil so that kernels/cuda/attention.cu (the
// op-table entry, which keeps the plain kernels for f32 and other head dims)
// and bench/attention_bench.cu (a standalone nvcc program) share one copy.
// Layout: q, out, dout, dq (b, t, h, d); k, v, dk, dv (b, t, kv, d); lse,
// delta (b, h, t) f32; query head hh reads kv head hh / (h / kv).
//
// Tiles are 64 rows; a CTA is 4 warps and each warp owns 16 rows of its
// tile, so no warp ever reads another warp's accumulators. Shared-memory
// tiles are stored with 16-byte chunks XOR-swizzled by (row & 7), which
// makes every ldmatrix and cp.async conflict-free. The streamed operand
// pair is double-buffered with cp.async: tile j+1 loads while j computes.
//   forward  grid (t/64, b·h): O, lse; online softmax in registers.
//   dq       grid (t/64, b·h): delta = rowsum(dO∘O), then dQ = scale·dS·K over
//            key tiles up to the diagonal (P, dP recomputed).
//   dk/dv    grid (t/64, b·kv): one CTA per key tile sums over every query
//            head of its group and every query tile from the diagonal on.
// Backward is deterministic (no atomics): each output row is summed by one
// warp in a fixed order. The price is recomputing QKᵀ and dO·Vᵀ in the dq
// pass: 7 tile GEMMs instead of FA2's 5.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace baton::cuda::flash {

using bf16 = __nv_bfloat16;

constexpr int kBlock = 64;  // rows of every tile (queries and keys)
constexpr int kWarps = 4;   // 16 rows each
constexpr int kThreads = 32 * kWarps;

struct Params {
  const bf16* q;     // (b, t, h, d)
  const bf16* k;     // (b, t, kv, d)
  const bf16* v;     // (b, t, kv, d)
  const bf16* out;   // (b, t, h, d): forward output, read by backward
  const bf16* dout;  // (b, t, h, d)
  bf16* o;           // (b, t, h, d): forward writes
  float* lse;        // (b, h, t): forward writes, backward reads
  float* delta;      // (b, h, t): backward scratch, rowsum(dout∘out)
  bf16* dq;          // (b, t, h, d)
  bf16* dk;          // (b, t, kv, d)
  bf16* dv;          // (b, t, kv, d)
  int b, t, h, kv;
  float scale;  // 1/sqrt(d)
};

// ---- primitives

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Element offset of (row, col) in a swizzled [kBlock][D] tile; col % 8 == 0.
template <int D>
__device__ __forceinline__ int Swz(int row, int col) {
  return row * D + ((((col >> 3) ^ (row & 7))) << 3);
}
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsync4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// c (16x8 f32) += a (16x16 bf16, row) · b (16x8 bf16, col).
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// Σ a[i]·b[i] over 8 bf16 pairs packed in 16 bytes.
__device__ __forceinline__ float Dot8(const uint4& a, const uint4& b) {
  const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&a);
  const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 u = __bfloat1622float2(x[i]), w = __bfloat1622float2(y[i]);
    s = fmaf(u.x, w.x, fmaf(u.y, w.y, s));
  }
  return s;
}
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Rows row0.. of a (rows, stride) matrix into a swizzled [kBlock][D] tile;
// rows ≥ n are zero-filled (their address is clamped to row 0, never read).
template <int D>
__device__ __forceinline__ void LoadTile(bf16* tile, const bf16* g, int64_t stride, int row0,
                                         int n) {
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int c = threadIdx.x; c < kBlock * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = row0 + r < n;
    const bf16* src = g + (valid ? (row0 + r) * stride : 0) + col;
    CpAsync16(SmemAddr(tile + Swz<D>(r, col)), src, valid);
  }
}
// kBlock floats from g[row0..]; entries ≥ n become 0.
__device__ __forceinline__ void LoadRowVec(float* s, const float* g, int row0, int n) {
  if (threadIdx.x < kBlock) {
    const int r = row0 + threadIdx.x;
    CpAsync4(SmemAddr(s + threadIdx.x), g + (r < n ? r : 0), r < n);
  }
}

// acc (16 x 64, 8 n-tiles) += A[arow0..+16][0..D) · B[0..64][0..D)ᵀ, both
// swizzled smem tiles stored row-major with D contiguous.
template <int D>
__device__ __forceinline__ void GemmNT(float (&acc)[8][4], const bf16* a, int arow0,
                                       const bf16* b) {
  const int lane = threadIdx.x & 31;
  const uint32_t a_base = SmemAddr(a), b_base = SmemAddr(b);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    Ldsm4(af, a_base + 2 * Swz<D>(arow0 + (lane & 15), kk * 16 + (lane >> 4) * 8));
#pragma unroll
    for (int nn = 0; nn < 4; ++nn) {
      const int j = lane >> 3;
      uint32_t bf[4];
      Ldsm4(bf, b_base + 2 * Swz<D>(nn * 16 + (lane & 7) + 8 * (j >> 1), kk * 16 + 8 * (j & 1)));
      Mma(acc[2 * nn], af, bf[0], bf[1]);
      Mma(acc[2 * nn + 1], af, bf[2], bf[3]);
    }
  }
}
// acc (16 x D) += P (16 x 64, bf16 A fragments from registers) · B[0..64][0..D).
template <int D>
__device__ __forceinline__ void GemmRS(float (&acc)[D / 8][4], const uint32_t (&pa)[4][4],
                                       const bf16* b) {
  const int lane = threadIdx.x & 31;
  const uint32_t b_base = SmemAddr(b);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int nn = 0; nn < D / 16; ++nn) {
      const int j = lane >> 3;
      uint32_t bf[4];
      Ldsm4T(bf, b_base + 2 * Swz<D>(kk * 16 + (lane & 7) + 8 * (j & 1), nn * 16 + 8 * (j >> 1)));
      Mma(acc[2 * nn], pa[kk], bf[0], bf[1]);
      Mma(acc[2 * nn + 1], pa[kk], bf[2], bf[3]);
    }
  }
}
// Accumulator (16 x 64 f32) as the A operand (bf16) of the next product.
__device__ __forceinline__ void ToAFragments(const float (&s)[8][4], uint32_t (&pa)[4][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    pa[kk][0] = PackBf16(s[2 * kk][0], s[2 * kk][1]);
    pa[kk][1] = PackBf16(s[2 * kk][2], s[2 * kk][3]);
    pa[kk][2] = PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    pa[kk][3] = PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}
template <int N>
__device__ __forceinline__ void Zero(float (&acc)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
}
// Scales a warp's 16 x D accumulator, stages it in its own 16 rows of the
// swizzled tile `stage` (no other warp reads those rows), and writes rows
// < n of (rows, stride) matrix g from row0 with 16-byte stores.
template <int D>
__device__ __forceinline__ void StoreRows(const float (&acc)[D / 8][4], float scale0,
                                          float scale1, bf16* stage, bf16* g, int64_t stride,
                                          int row0, int n) {
  const int lane = threadIdx.x & 31, wr = (threadIdx.x >> 5) * 16;
  const int gi = lane >> 2, ti = lane & 3;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8;
    *reinterpret_cast<uint32_t*>(stage + Swz<D>(wr + gi, col) + 2 * ti) =
        PackBf16(acc[nt][0] * scale0, acc[nt][1] * scale0);
    *reinterpret_cast<uint32_t*>(stage + Swz<D>(wr + gi + 8, col) + 2 * ti) =
        PackBf16(acc[nt][2] * scale1, acc[nt][3] * scale1);
  }
  __syncwarp();
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int c = lane; c < 16 * kChunks; c += 32) {
    const int r = wr + c / kChunks, col = (c % kChunks) * 8;
    if (row0 + r < n)
      *reinterpret_cast<uint4*>(g + (row0 + r) * stride + col) =
          *reinterpret_cast<const uint4*>(stage + Swz<D>(r, col));
  }
}
// Causal mask of a diagonal tile: entry (row, col) of the warp's 16 x 64
// block, with tile-relative row and col offsets; -inf where col > row
// (transposed: where row > col).
template <bool kTransposed>
__device__ __forceinline__ void MaskDiagonal(float (&s)[8][4], int wr) {
  const int lane = threadIdx.x & 31, gi = lane >> 2, ti = lane & 3;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = wr + gi + 8 * (e >> 1), col = nt * 8 + 2 * ti + (e & 1);
      if (kTransposed ? row > col : col > row) s[nt][e] = -INFINITY;
    }
}

constexpr float kLog2e = 1.4426950408889634f;

// ---- forward: grid (ceil(t/64), b·h), smem Q + 2·(K, V) tiles.
template <int D>
__global__ void __launch_bounds__(kThreads) ForwardKernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* sq = reinterpret_cast<bf16*>(smem_raw);
  bf16* skv = sq + kBlock * D;  // buffer i: K at skv + 2i·tile, V after it
  constexpr int kTile = kBlock * D;
  const int tile = gridDim.x - 1 - blockIdx.x;  // longest rows first
  const int bh = blockIdx.y, bb = bh / p.h, hh = bh % p.h, kvh = hh / (p.h / p.kv);
  const int q0 = tile * kBlock;
  const int64_t q_stride = static_cast<int64_t>(p.h) * D, kv_stride = static_cast<int64_t>(p.kv) * D;
  const bf16* qg = p.q + (static_cast<int64_t>(bb) * p.t * p.h + hh) * D;
  const bf16* kg = p.k + (static_cast<int64_t>(bb) * p.t * p.kv + kvh) * D;
  const bf16* vg = p.v + (static_cast<int64_t>(bb) * p.t * p.kv + kvh) * D;
  const int lane = threadIdx.x & 31, wr = (threadIdx.x >> 5) * 16, ti = lane & 3;
  const float sl2 = p.scale * kLog2e;

  LoadTile<D>(sq, qg, q_stride, q0, p.t);
  LoadTile<D>(skv, kg, kv_stride, 0, p.t);
  LoadTile<D>(skv + kTile, vg, kv_stride, 0, p.t);
  CpAsyncCommit();

  float o[D / 8][4];
  Zero(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (int j = 0; j <= tile; ++j) {
    if (j < tile) {
      bf16* nb = skv + ((j + 1) & 1) * 2 * kTile;
      LoadTile<D>(nb, kg, kv_stride, (j + 1) * kBlock, p.t);
      LoadTile<D>(nb + kTile, vg, kv_stride, (j + 1) * kBlock, p.t);
    }
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    const bf16* sk = skv + (j & 1) * 2 * kTile;
    float s[8][4];
    Zero(s);
    GemmNT<D>(s, sq, wr, sk);
    if (j == tile) MaskDiagonal<false>(s, wr);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[r], mx * sl2);  // finite: key 0 is in every row's first tile
      const float corr = Exp2(m[r] - m_new);
      m[r] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        s[nt][2 * r] = Exp2(fmaf(s[nt][2 * r], sl2, -m_new));
        s[nt][2 * r + 1] = Exp2(fmaf(s[nt][2 * r + 1], sl2, -m_new));
        sum += s[nt][2 * r] + s[nt][2 * r + 1];
      }
      l[r] = l[r] * corr + sum;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        o[nt][2 * r] *= corr;
        o[nt][2 * r + 1] *= corr;
      }
    }
    uint32_t pa[4][4];
    ToAFragments(s, pa);
    GemmRS<D>(o, pa, sk + kTile);
    __syncthreads();  // buffer j&1 is refilled at iteration j+1
  }
  CpAsyncWait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const int row = q0 + wr + (lane >> 2);
  if (ti == 0) {
    float* lse = p.lse + static_cast<int64_t>(bh) * p.t;
    if (row < p.t) lse[row] = (m[0] + log2f(l[0])) * 0.6931471805599453f;
    if (row + 8 < p.t) lse[row + 8] = (m[1] + log2f(l[1])) * 0.6931471805599453f;
  }
  StoreRows<D>(o, 1.f / l[0], 1.f / l[1], sq, p.o + (qg - p.q), q_stride, q0, p.t);
}

// ---- backward dq (and delta): grid (ceil(t/64), b·h), smem Q, dO + 2·(K, V).
template <int D>
__global__ void __launch_bounds__(kThreads) BackwardDqKernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr int kTile = kBlock * D;
  bf16* sq = reinterpret_cast<bf16*>(smem_raw);
  bf16* sdo = sq + kTile;
  bf16* skv = sdo + kTile;
  const int tile = gridDim.x - 1 - blockIdx.x;
  const int bh = blockIdx.y, bb = bh / p.h, hh = bh % p.h, kvh = hh / (p.h / p.kv);
  const int q0 = tile * kBlock;
  const int64_t q_stride = static_cast<int64_t>(p.h) * D, kv_stride = static_cast<int64_t>(p.kv) * D;
  const int64_t q_off = (static_cast<int64_t>(bb) * p.t * p.h + hh) * D;
  const bf16* kg = p.k + (static_cast<int64_t>(bb) * p.t * p.kv + kvh) * D;
  const bf16* vg = p.v + (static_cast<int64_t>(bb) * p.t * p.kv + kvh) * D;
  const int lane = threadIdx.x & 31, wr = (threadIdx.x >> 5) * 16, gi = lane >> 2;
  const float sl2 = p.scale * kLog2e;

  LoadTile<D>(sq, p.q + q_off, q_stride, q0, p.t);
  LoadTile<D>(sdo, p.dout + q_off, q_stride, q0, p.t);
  LoadTile<D>(skv, kg, kv_stride, 0, p.t);
  LoadTile<D>(skv + kTile, vg, kv_stride, 0, p.t);
  CpAsyncCommit();

  // delta = rowsum(dO∘O) for the warp's 16 rows, straight from global with
  // 16-byte loads, all issued before the first sum.
  float delta[2], lse2[2];
  {
    __shared__ float sdelta[kWarps * 16];
    constexpr int kChunks = D / 8, kRowsPerPass = 32 / kChunks, kPasses = 16 / kRowsPerPass;
    float part[kPasses];
#pragma unroll
    for (int ps = 0; ps < kPasses; ++ps) {
      const int row = q0 + wr + ps * kRowsPerPass + lane / kChunks;
      part[ps] = 0.f;
      if (row < p.t) {
        const int64_t at = q_off + row * q_stride + (lane % kChunks) * 8;
        const uint4 a = *reinterpret_cast<const uint4*>(p.out + at);
        const uint4 b = *reinterpret_cast<const uint4*>(p.dout + at);
        part[ps] = Dot8(a, b);
      }
    }
#pragma unroll
    for (int ps = 0; ps < kPasses; ++ps) {
#pragma unroll
      for (int o = kChunks / 2; o > 0; o >>= 1)
        part[ps] += __shfl_xor_sync(0xffffffffu, part[ps], o);
      const int r = ps * kRowsPerPass + lane / kChunks;
      if (lane % kChunks == 0) {
        sdelta[wr + r] = part[ps];
        if (q0 + wr + r < p.t) p.delta[static_cast<int64_t>(bh) * p.t + q0 + wr + r] = part[ps];
      }
    }
    __syncwarp();
    const float* lse = p.lse + static_cast<int64_t>(bh) * p.t;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      delta[r] = sdelta[wr + gi + 8 * r];
      const int rr = q0 + wr + gi + 8 * r;
      lse2[r] = rr < p.t ? lse[rr] * kLog2e : 0.f;
    }
  }

  float dq[D / 8][4];
  Zero(dq);
  for (int j = 0; j <= tile; ++j) {
    if (j < tile) {
      bf16* nb = skv + ((j + 1) & 1) * 2 * kTile;
      LoadTile<D>(nb, kg, kv_stride, (j + 1) * kBlock, p.t);
      LoadTile<D>(nb + kTile, vg, kv_stride, (j + 1) * kBlock, p.t);
    }
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    const bf16* sk = skv + (j & 1) * 2 * kTile;
    float s[8][4], dp[8][4];
    Zero(s);
    GemmNT<D>(s, sq, wr, sk);
    if (j == tile) MaskDiagonal<false>(s, wr);
    Zero(dp);
    GemmNT<D>(dp, sdo, wr, sk + kTile);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pr = Exp2(fmaf(s[nt][e], sl2, -lse2[e >> 1]));
        s[nt][e] = pr * (dp[nt][e] - delta[e >> 1]);  // dS
      }
    uint32_t pa[4][4];
    ToAFragments(s, pa);
    GemmRS<D>(dq, pa, sk);
    __syncthreads();
  }
  CpAsyncWait<0>();
  StoreRows<D>(dq, p.scale, p.scale, sq, p.dq + q_off, q_stride, q0, p.t);
}

// ---- backward dk, dv: grid (ceil(t/64), b·kv), smem K, V + 2·(Q, dO) tiles
// + 2·(lse, delta) rows. Warp w owns keys k0+16w.. and works on Sᵀ = K·Qᵀ.
template <int D>
__global__ void __launch_bounds__(kThreads) BackwardDkDvKernel(Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr int kTile = kBlock * D;
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  bf16* sv = sk + kTile;
  bf16* sqd = sv + kTile;  // buffer i: Q at sqd + 2i·tile, dO after it
  float* srow = reinterpret_cast<float*>(sqd + 4 * kTile);  // buffer i: lse·log2e, delta
  const int kt = blockIdx.x;  // key tile 0 has the most query tiles: first
  const int bkv = blockIdx.y, bb = bkv / p.kv, kvh = bkv % p.kv, group = p.h / p.kv;
  const int k0 = kt * kBlock, n_q = (p.t + kBlock - 1) / kBlock;
  const int64_t q_stride = static_cast<int64_t>(p.h) * D, kv_stride = static_cast<int64_t>(p.kv) * D;
  const int64_t kv_off = (static_cast<int64_t>(bb) * p.t * p.kv + kvh) * D;
  const int lane = threadIdx.x & 31, wr = (threadIdx.x >> 5) * 16, ti = lane & 3;
  const float sl2 = p.scale * kLog2e;
  const int per_head = n_q - kt, iters = group * per_head;

  auto issue = [&](int it, int buf) {
    const int hh = kvh * group + it / per_head, qt = kt + it % per_head;
    const int64_t q_off = (static_cast<int64_t>(bb) * p.t * p.h + hh) * D;
    const int64_t row_off = (static_cast<int64_t>(bb) * p.h + hh) * p.t;
    bf16* nb = sqd + buf * 2 * kTile;
    LoadTile<D>(nb, p.q + q_off, q_stride, qt * kBlock, p.t);
    LoadTile<D>(nb + kTile, p.dout + q_off, q_stride, qt * kBlock, p.t);
    LoadRowVec(srow + buf * 2 * kBlock, p.lse + row_off, qt * kBlock, p.t);
    LoadRowVec(srow + buf * 2 * kBlock + kBlock, p.delta + row_off, qt * kBlock, p.t);
  };
  LoadTile<D>(sk, p.k + kv_off, kv_stride, k0, p.t);
  LoadTile<D>(sv, p.v + kv_off, kv_stride, k0, p.t);
  issue(0, 0);
  CpAsyncCommit();

  float dk[D / 8][4], dv[D / 8][4];
  Zero(dk);
  Zero(dv);
  for (int it = 0; it < iters; ++it) {
    if (it + 1 < iters) issue(it + 1, (it + 1) & 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    const bf16* sq = sqd + (it & 1) * 2 * kTile;
    const bf16* sdo = sq + kTile;
    const float* lse = srow + (it & 1) * 2 * kBlock;
    const float* delta = lse + kBlock;
    float s[8][4];
    Zero(s);
    GemmNT<D>(s, sk, wr, sq);  // Sᵀ: rows keys, cols queries
    if (it % per_head == 0) MaskDiagonal<true>(s, wr);
    float dp[8][4];
    Zero(dp);
    GemmNT<D>(dp, sv, wr, sdo);  // dPᵀ = V·dOᵀ (before Pᵀ·dO: fewer live registers)
    // Zero-filled rows past t: Q, dO are 0 there, so their terms vanish.
    uint32_t pa[4][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const float2 l2 = *reinterpret_cast<const float2*>(lse + nt * 8 + 2 * ti);
      const float2 d2 = *reinterpret_cast<const float2*>(delta + nt * 8 + 2 * ti);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = Exp2(fmaf(s[nt][e], sl2, -(e & 1 ? l2.y : l2.x) * kLog2e));  // Pᵀ
        dp[nt][e] = s[nt][e] * (dp[nt][e] - (e & 1 ? d2.y : d2.x));    // dSᵀ
      }
    }
    ToAFragments(s, pa);
    GemmRS<D>(dv, pa, sdo);  // dV += Pᵀ·dO
    ToAFragments(dp, pa);
    GemmRS<D>(dk, pa, sq);  // dK += dSᵀ·Q
    __syncthreads();
  }
  CpAsyncWait<0>();
  StoreRows<D>(dk, p.scale, p.scale, sk, p.dk + kv_off, kv_stride, k0, p.t);
  StoreRows<D>(dv, 1.f, 1.f, sv, p.dv + kv_off, kv_stride, k0, p.t);
}

// ---- launchers (error codes, not Status: the bench has no Abseil)

template <int D>
constexpr int ForwardSmem() { return 5 * kBlock * D * 2; }
template <int D>
constexpr int BackwardDqSmem() { return 6 * kBlock * D * 2; }
template <int D>
constexpr int BackwardDkDvSmem() { return 6 * kBlock * D * 2 + 4 * kBlock * 4; }

template <int D>
cudaError_t Forward(const Params& p, cudaStream_t stream) {
  // Per call, not once: the attribute is per device.
  const cudaError_t attr = cudaFuncSetAttribute(
      ForwardKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, ForwardSmem<D>());
  if (attr != cudaSuccess) return attr;
  const dim3 grid((p.t + kBlock - 1) / kBlock, p.b * p.h);
  ForwardKernel<D><<<grid, kThreads, ForwardSmem<D>(), stream>>>(p);
  return cudaGetLastError();
}
// p.delta must hold b·h·t floats.
template <int D>
cudaError_t Backward(const Params& p, cudaStream_t stream) {
  const cudaError_t attr_q = cudaFuncSetAttribute(
      BackwardDqKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, BackwardDqSmem<D>());
  const cudaError_t attr_k = cudaFuncSetAttribute(
      BackwardDkDvKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, BackwardDkDvSmem<D>());
  if (attr_q != cudaSuccess) return attr_q;
  if (attr_k != cudaSuccess) return attr_k;
  const int tiles = (p.t + kBlock - 1) / kBlock;
  BackwardDqKernel<D><<<dim3(tiles, p.b * p.h), kThreads, BackwardDqSmem<D>(), stream>>>(p);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  BackwardDkDvKernel<D><<<dim3(tiles, p.b * p.kv), kThreads, BackwardDkDvSmem<D>(), stream>>>(p);
  return cudaGetLastError();
}

}  // namespace baton::cuda::flash
