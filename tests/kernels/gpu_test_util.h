// Helpers of the GPU parity tests (tests/kernels/*_gpu_test.cc): moving CPU
// f32 reference tensors to the device in the dtype under test and back, and
// the skip that keeps every GPU test clean on a machine without one. Only
// included where BATON_HAVE_CUDA is defined.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "kernels/cpu/convert.h"
#include "kernels/gpu.h"
#include "runtime/cuda_allocator.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

// Skips the test (with the reason) where no GPU is visible.
#define REQUIRE_GPU() \
  if (::baton::CudaDeviceCount() == 0) GTEST_SKIP() << ::baton::CudaDeviceSummary()

namespace baton::testing {

// f32 values rounded to bf16 and back (what a bf16 tensor can hold).
inline Tensor RoundBf16(const Tensor& f32) {
  Tensor out = Tensor::Empty(f32.shape(), DType::kF32);
  for (int64_t i = 0; i < f32.numel(); ++i)
    out.data<float>()[i] = cpu::Bf16ToF32(cpu::F32ToBf16(f32.data<float>()[i]));
  return out;
}
// A CPU f32 tensor as a CUDA tensor of dtype t (f32 or bf16).
inline Tensor ToDevice(const Tensor& f32, DType t) {
  Tensor host = f32;
  if (t == DType::kBF16) {
    host = Tensor::Empty(f32.shape(), DType::kBF16);
    cpu::F32ToBf16(f32.data<float>(), f32.numel(), static_cast<uint16_t*>(host.raw()));
  }
  Tensor d = Tensor::Empty(f32.shape(), t, DefaultCudaAllocator());
  d.CopyFrom(host);
  return d;
}
inline Tensor ToDeviceI32(const Tensor& i32) {
  Tensor d = Tensor::Empty(i32.shape(), DType::kI32, DefaultCudaAllocator());
  d.CopyFrom(i32);
  return d;
}
// A CUDA tensor back as CPU f32 (i32 stays i32).
inline Tensor ToHost(const Tensor& d) {
  Tensor host = Tensor::Empty(d.shape(), d.dtype());
  host.CopyFrom(d);
  if (d.dtype() != DType::kBF16) return host;
  Tensor out = Tensor::Empty(d.shape(), DType::kF32);
  cpu::Bf16ToF32(static_cast<const uint16_t*>(host.raw()), d.numel(), out.data<float>());
  return out;
}
// Random f32 on the CPU in [lo, hi), already rounded to what dtype t holds.
inline Tensor Input(const Shape& s, DType t, std::mt19937_64& rng, double lo = 0.1, double hi = 1.0) {
  Tensor x = RandomTensor(s, DType::kF32, rng, lo, hi);
  return t == DType::kBF16 ? RoundBf16(x) : x;
}

}  // namespace baton::testing
