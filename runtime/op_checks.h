// The entry checks of the ops (ops.cc, ops_pointwise.cc,
// ops_vocab_parallel.cc), written once for every device: an OpArgs is made
// from the op's first tensor, whose device picks the backend rules
// (op_table.h: which dtypes, f32 statistics, f32 gradients). A failed check
// is InvalidArgument naming the op, the argument and the shapes ("RmsNorm:
// w is f32[96] cpu, expected shape [64]"); the message is built only on
// failure, so the checks stay cheap on the hot path (no allocation).
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/op_table.h"
#include "runtime/tensor.h"

namespace baton::ops::internal {

#define BATON_OP_CHECK(cond, ...)                                                      \
  do {                                                                                 \
    if (!(cond)) [[unlikely]]                                                          \
      return ::absl::InvalidArgumentError(::absl::StrCat(__VA_ARGS__));                \
  } while (0)

// A wanted shape, from a braced list or a Shape, without a heap allocation
// (a Shape is built only for the message of a failed check).
class Dims {
 public:
  Dims(std::initializer_list<int64_t> l) : size_(l.size()) { Fill(l.begin()); }
  Dims(const Shape& s) : size_(s.size()) { Fill(s.data()); }  // NOLINT: implicit on purpose
  bool Matches(const Shape& s) const { return s.size() == size_ && std::equal(s.begin(), s.end(), data_); }
  Shape ToShape() const { return Shape(data_, data_ + size_); }

 private:
  void Fill(const int64_t* d) {
    BATON_CHECK_MSG(size_ <= kMaxRank, "op checks: rank above 8");
    std::copy(d, d + size_, data_);
  }
  static constexpr size_t kMaxRank = 8;
  int64_t data_[kMaxRank];
  size_t size_;
};

class OpArgs {
 public:
  OpArgs(OpId id, const Tensor& first)
      : op_(OpName(id)), device_(first.device()), rules_(KernelsFor(first.device()).rules) {}

  const char* op() const { return op_; }
  Device device() const { return device_; }
  const BackendRules& rules() const { return rules_; }

  // Defined, on the op's device, contiguous.
  absl::Status Placed(const char* name, const Tensor& t) const {
    BATON_OP_CHECK(t.defined(), op_, ": ", name, " is undefined");
    BATON_OP_CHECK(t.device() == device_, op_, ": ", name, " is ", t.DebugString(), "; expected a ",
                   DeviceName(device_), " tensor like the op's first argument");
    BATON_OP_CHECK(t.is_contiguous(), op_, ": ", name, " ", t.DebugString(), " is not contiguous");
    return absl::OkStatus();
  }
  // Placed, and an element dtype the device's kernels take (f32 and f64 or bf16).
  absl::Status Float(const char* name, const Tensor& t) const {
    BATON_RETURN_IF_ERROR(Placed(name, t));
    BATON_OP_CHECK(t.dtype() == DType::kF32 || t.dtype() == rules_.second_float, op_, ": ", name, " is ",
                   t.DebugString(), "; the ", DeviceName(device_), " kernels take f32 or ",
                   DTypeName(rules_.second_float));
    return absl::OkStatus();
  }
  absl::Status Rank(const char* name, const Tensor& t, int rank) const {
    BATON_OP_CHECK(t.rank() == rank, op_, ": ", name, " is ", t.DebugString(), ", expected rank ", rank);
    return absl::OkStatus();
  }
  absl::Status FloatRank(const char* name, const Tensor& t, int rank) const {
    BATON_RETURN_IF_ERROR(Float(name, t));
    return Rank(name, t, rank);
  }
  absl::Status Shaped(const char* name, const Tensor& t, Dims want) const {
    BATON_OP_CHECK(want.Matches(t.shape()), op_, ": ", name, " is ", t.DebugString(), ", expected shape ",
                   ShapeString(want.ToShape()));
    return absl::OkStatus();
  }
  // Placed, of dtype `dtype` and shape `want`.
  absl::Status Exactly(const char* name, const Tensor& t, DType dtype, Dims want) const {
    BATON_RETURN_IF_ERROR(Placed(name, t));
    BATON_OP_CHECK(t.dtype() == dtype && want.Matches(t.shape()), op_, ": ", name, " is ", t.DebugString(),
                   ", expected ", DTypeName(dtype), ShapeString(want.ToShape()));
    return absl::OkStatus();
  }
  // A float tensor of `want` shape with ref's dtype: the common case.
  absl::Status Like(const char* name, const Tensor& t, const Tensor& ref, Dims want) const {
    BATON_RETURN_IF_ERROR(Float(name, t));
    BATON_OP_CHECK(t.dtype() == ref.dtype(), op_, ": ", name, " is ", t.DebugString(), ", expected dtype ",
                   DTypeName(ref.dtype()));
    return Shaped(name, t, want);
  }
  // A parameter gradient: ref's dtype, or f32 where the backend accumulates grads in f32.
  absl::Status Grad(const char* name, const Tensor& t, const Tensor& ref, Dims want) const {
    BATON_RETURN_IF_ERROR(Float(name, t));
    const bool ok = t.dtype() == ref.dtype() || (rules_.f32_gradients && t.dtype() == DType::kF32);
    BATON_OP_CHECK(ok, op_, ": ", name, " is ", t.DebugString(), ", expected dtype ", DTypeName(ref.dtype()),
                   rules_.f32_gradients ? " or f32" : "");
    return Shaped(name, t, want);
  }
  // A saved statistic or a loss: f32 where the backend keeps them in f32, else ref's dtype.
  absl::Status Stat(const char* name, const Tensor& t, const Tensor& ref, Dims want) const {
    return Exactly(name, t, StatDType(ref), want);
  }
  DType StatDType(const Tensor& ref) const { return rules_.f32_statistics ? DType::kF32 : ref.dtype(); }
  // Token ids or targets: i32 (n).
  absl::Status Ids(const char* name, const Tensor& t, int64_t n) const {
    return Exactly(name, t, DType::kI32, {n});
  }
  // An output that must not overlap an input (the kernels read it while writing).
  absl::Status Disjoint(const char* name, const Tensor& out, const char* in_name, const Tensor& in) const {
    const char* o = static_cast<const char*>(out.raw());
    const char* i = static_cast<const char*>(in.raw());
    const bool overlap = o < i + in.nbytes() && i < o + out.nbytes();
    BATON_OP_CHECK(!overlap, op_, ": ", name, " ", out.DebugString(), " overlaps ", in_name, " ",
                   in.DebugString());
    return absl::OkStatus();
  }

 private:
  const char* op_;
  Device device_;
  const BackendRules& rules_;
};

// An optional tensor argument: non-null and defined.
inline bool Given(const Tensor* t) { return t != nullptr && t->defined(); }

}  // namespace baton::ops::internal
