// Entry checks and dtype dispatch shared by the op table (ops.cc,
// ops_pointwise.cc). A failed check is a bug in our own code, so it aborts
// with file:line and a message naming the op, the argument and the shapes
// ("RmsNorm: w is f32[96], expected shape [64]"); the message is only built
// on failure, keeping the checks cheap on the hot path.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/tensor.h"

namespace baton::ops::internal {

#define BATON_OP_CHECK(cond, ...)                                                     \
  do {                                                                                \
    if (!(cond))                                                                      \
      ::baton::internal::CheckFailed(#cond, __FILE__, __LINE__,                       \
                                     ::absl::StrCat(__VA_ARGS__).c_str());            \
  } while (0)

// Defined, on the CPU (CUDA tensors were dispatched before), contiguous.
inline void CheckCpuContiguous(const char* op, const char* name, const Tensor& t) {
  BATON_OP_CHECK(t.defined(), op, ": ", name, " is undefined");
  BATON_OP_CHECK(t.device() == Device::kCpu, op, ": ", name, " is ", t.DebugString(),
                 "; expected a CPU tensor like the op's first argument");
  BATON_OP_CHECK(t.is_contiguous(), op, ": ", name, " ", t.DebugString(), " is not contiguous");
}

// Defined, on a CUDA device, contiguous (the CUDA half of the op table).
inline void CheckCudaContiguous(const char* op, const char* name, const Tensor& t) {
  BATON_OP_CHECK(t.defined(), op, ": ", name, " is undefined");
  BATON_OP_CHECK(t.device() == Device::kCuda, op, ": ", name, " is ", t.DebugString(),
                 "; expected a CUDA tensor like the op's first argument");
  BATON_OP_CHECK(t.is_contiguous(), op, ": ", name, " ", t.DebugString(), " is not contiguous");
}

// A CUDA tensor of a dtype the CUDA kernels implement (f32, bf16).
inline void CheckCudaFloat(const char* op, const char* name, const Tensor& t) {
  CheckCudaContiguous(op, name, t);
  BATON_OP_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16, op, ": ", name, " is ",
                 t.DebugString(), "; the CUDA kernels take f32 or bf16");
}

// As above, plus a floating dtype the CPU kernels implement (f32, f64).
inline void CheckFloat(const char* op, const char* name, const Tensor& t) {
  CheckCpuContiguous(op, name, t);
  BATON_OP_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kF64, op, ": ", name, " is ",
                 t.DebugString(), "; the CPU kernels take f32 or f64");
}

inline void CheckShape(const char* op, const char* name, const Tensor& t, const Shape& want) {
  BATON_OP_CHECK(t.shape() == want, op, ": ", name, " is ", t.DebugString(), ", expected shape ",
                 ShapeString(want));
}

inline void CheckSameDType(const char* op, const char* name, const Tensor& t, const Tensor& ref) {
  BATON_OP_CHECK(t.dtype() == ref.dtype(), op, ": ", name, " is ", t.DebugString(),
                 ", expected dtype ", DTypeName(ref.dtype()));
}

inline void CheckRank(const char* op, const char* name, const Tensor& t, int rank) {
  BATON_OP_CHECK(t.rank() == rank, op, ": ", name, " is ", t.DebugString(), ", expected rank ",
                 rank);
}

// A float tensor of `want` shape with ref's dtype: the common case.
inline void CheckLike(const char* op, const char* name, const Tensor& t, const Tensor& ref,
                      const Shape& want) {
  CheckFloat(op, name, t);
  CheckSameDType(op, name, t, ref);
  CheckShape(op, name, t, want);
}

// Calls f(float{}) or f(double{}) for the dtype; the generic lambda then
// names the element type as decltype(tag).
template <typename F>
void DispatchFloat(const char* op, DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF32: f(float{}); return;
    case DType::kF64: f(double{}); return;
    default: BATON_OP_CHECK(false, op, ": no CPU kernel for dtype ", DTypeName(dtype));
  }
}

}  // namespace baton::ops::internal
