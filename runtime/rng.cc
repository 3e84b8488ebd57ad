// Philox4x32-10 and the sharding-invariant normal fill (see rng.h); the
// draw itself is kernels/philox_normal.h, shared with the device fill.
#include "runtime/rng.h"

#include <utility>

#include "kernels/philox_normal.h"

namespace baton {

std::array<uint32_t, 4> Philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  const philox::Block out = philox::Philox4x32_10(philox::Block{{ctr[0], ctr[1], ctr[2], ctr[3]}}, key[0], key[1]);
  return {out.w[0], out.w[1], out.w[2], out.w[3]};
}

uint64_t Fnv1a64(std::string_view s, uint64_t h) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;  // FNV prime
  }
  return h;
}

namespace {
// Both normals of Philox block `block` (Box-Muller: cos, then sin): element
// 2k is .first, 2k+1 is .second. NormalAt and the fills share this, so a
// fill that takes both halves at once gives the same bits as one at a time;
// the device fill (kernels/cuda/philox_init.h) calls the same function.
std::pair<double, double> NormalPair(uint64_t seed, uint64_t name_hash, uint64_t block) {
  const philox::NormalPair z = philox::NormalPairAt(seed, name_hash, block);
  return {z.first, z.second};
}
}  // namespace

double NormalAt(uint64_t seed, uint64_t name_hash, uint64_t index) {
  const std::pair<double, double> z = NormalPair(seed, name_hash, index / 2);
  return index % 2 == 0 ? z.first : z.second;
}

namespace {
template <typename T>
void Fill2D(T* out, int64_t rows, int64_t cols, uint64_t seed, uint64_t hash, double std,
            int64_t logical_cols, int64_t row0, int64_t col0) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = (row0 + r) * logical_cols + col0;
    T* row = out + r * cols;
    int64_t c = 0;
    if (cols > 0 && base % 2 != 0) {  // an odd first element: the second half of its pair
      row[c] = static_cast<T>(std * NormalAt(seed, hash, static_cast<uint64_t>(base)));
      ++c;
    }
    for (; c + 1 < cols; c += 2) {  // whole pairs: one Philox block, one log, for two values
      const std::pair<double, double> z = NormalPair(seed, hash, static_cast<uint64_t>(base + c) / 2);
      row[c] = static_cast<T>(std * z.first);
      row[c + 1] = static_cast<T>(std * z.second);
    }
    if (c < cols) row[c] = static_cast<T>(std * NormalAt(seed, hash, static_cast<uint64_t>(base + c)));
  }
}

void FillRegion(Tensor& t, int64_t rows, int64_t cols, uint64_t seed, std::string_view name,
                float std, int64_t logical_cols, int64_t row0, int64_t col0) {
  BATON_CHECK_MSG(t.device() == Device::kCpu && t.is_contiguous(), t.DebugString().c_str());
  const uint64_t hash = Fnv1a64(name);
  switch (t.dtype()) {
    case DType::kF32:
      Fill2D(t.data<float>(), rows, cols, seed, hash, std, logical_cols, row0, col0);
      break;
    case DType::kF64:
      Fill2D(t.data<double>(), rows, cols, seed, hash, std, logical_cols, row0, col0);
      break;
    default:
      BATON_CHECK_MSG(false, (std::string("FillNormal: unsupported dtype ") + DTypeName(t.dtype())).c_str());
  }
}
}  // namespace

void FillNormal(Tensor& t, uint64_t seed, std::string_view name, float std, int64_t logical_offset) {
  BATON_CHECK(logical_offset >= 0);
  // One row of numel() elements starting at logical_offset.
  FillRegion(t, 1, t.numel(), seed, name, std, 0, 0, logical_offset);
}

void FillNormal2D(Tensor& t, uint64_t seed, std::string_view name, float std, int64_t logical_cols,
                  int64_t row0, int64_t col0) {
  BATON_CHECK_MSG(t.rank() == 2, t.DebugString().c_str());
  BATON_CHECK(row0 >= 0 && col0 >= 0 && col0 + t.dim(1) <= logical_cols);
  FillRegion(t, t.dim(0), t.dim(1), seed, name, std, logical_cols, row0, col0);
}

}  // namespace baton
