// TeacherTopKOf and OfflineDistillLoss (see distill_offline.h): argument
// checks, then kernels/cpu/distill_topk.h; losses summed in row order.
#include "runtime/distill_offline.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/distill_topk.h"

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

bool CpuFloat(const Tensor& t) {
  return t.defined() && t.device() == Device::kCpu && t.is_contiguous() &&
         (t.dtype() == DType::kF32 || t.dtype() == DType::kF64);
}

template <typename T>
DistillLossSums Sums(const Tensor& losses) {
  const int64_t n = losses.dim(1);
  const T* l = losses.data<T>();
  DistillLossSums out;
  for (int64_t r = 0; r < n; ++r) {
    out.loss += static_cast<double>(l[r]);
    out.kl += static_cast<double>(l[n + r]);
    out.ce += static_cast<double>(l[2 * n + r]);
  }
  return out;
}

}  // namespace

absl::StatusOr<TeacherTopK> TeacherTopKOf(const Tensor& logits, int64_t k, double temperature) {
  if (!CpuFloat(logits) || logits.rank() != 2)
    return Bad("TeacherTopKOf: logits must be contiguous CPU f32/f64 (N, V), got ", logits.DebugString());
  const int64_t n = logits.dim(0), v = logits.dim(1);
  if (k < 1 || k > v) return Bad("distill.topk=", k, " must be in [1, vocab size ", v, "]");
  if (!(temperature > 0) || !std::isfinite(temperature)) return Bad("distill.temperature=", temperature, " must be > 0");
  TeacherTopK out{Tensor::Empty({n, k}, logits.dtype()), Tensor::Empty({n, k}, DType::kI32),
                  Tensor::Empty({n}, logits.dtype()), temperature};
  if (logits.dtype() == DType::kF32) {
    cpu::TopKLogits<float>(logits.data<float>(), n, v, k, temperature, out.values.data<float>(),
                           out.indices.data<int32_t>(), out.rest_lse.data<float>());
  } else {
    cpu::TopKLogits<double>(logits.data<double>(), n, v, k, temperature, out.values.data<double>(),
                            out.indices.data<int32_t>(), out.rest_lse.data<double>());
  }
  return out;
}

absl::StatusOr<DistillLossSums> OfflineDistillLoss(const Tensor& student, const TeacherTopK& teacher,
                                                   const Tensor& targets, const DistillLossOptions& o,
                                                   double grad_scale, Tensor* dstudent) {
  if (!(o.alpha >= 0 && o.alpha <= 1)) return Bad("OfflineDistillLoss: alpha=", o.alpha, " must be in [0, 1]");
  if (o.temperature != teacher.temperature)
    return Bad("distill.temperature=", o.temperature, " but the teacher's top-k logits were stored at temperature ",
               teacher.temperature, " (their rest log-sum-exp depends on it: dump them again)");
  if (!CpuFloat(student) || student.rank() != 2)
    return Bad("OfflineDistillLoss: student logits must be contiguous CPU f32/f64 (N, V), got ", student.DebugString());
  const int64_t n = student.dim(0), v = student.dim(1);
  const int64_t k = teacher.values.defined() && teacher.values.rank() == 2 ? teacher.values.dim(1) : 0;
  if (k < 1 || teacher.values.shape() != Shape{n, k} || teacher.values.dtype() != student.dtype() ||
      !teacher.values.is_contiguous() || teacher.indices.shape() != Shape{n, k} ||
      teacher.indices.dtype() != DType::kI32 || teacher.rest_lse.shape() != Shape{n} ||
      teacher.rest_lse.dtype() != student.dtype())
    return Bad("OfflineDistillLoss: teacher top-k (values ", teacher.values.DebugString(), ", indices ",
               teacher.indices.DebugString(), ", rest_lse ", teacher.rest_lse.DebugString(), ") does not fit student ",
               student.DebugString());
  if (targets.dtype() != DType::kI32 || targets.numel() != n || targets.device() != Device::kCpu)
    return Bad("OfflineDistillLoss: targets must be CPU i32 (", n, "), got ", targets.DebugString());
  for (int64_t r = 0; r < n; ++r) {
    if (targets.data<int32_t>()[r] >= v)
      return Bad("OfflineDistillLoss: target ", targets.data<int32_t>()[r], " of row ", r, " is >= vocab size ", v);
  }
  if (dstudent != nullptr && (dstudent->shape() != student.shape() || dstudent->dtype() != student.dtype() ||
                              !CpuFloat(*dstudent)))
    return Bad("OfflineDistillLoss: dstudent ", dstudent->DebugString(), " must be like ", student.DebugString());
  const cpu::DistillCoeffs c{o.alpha, o.temperature};
  Tensor losses = Tensor::Empty({3, n}, student.dtype());
  int64_t bad;
  if (student.dtype() == DType::kF32) {
    bad = cpu::OfflineDistillRows<float>(student.data<float>(), teacher.values.data<float>(),
                                         teacher.indices.data<int32_t>(), teacher.rest_lse.data<float>(),
                                         targets.data<int32_t>(), n, v, k, c, grad_scale, losses.data<float>(),
                                         dstudent != nullptr ? dstudent->data<float>() : nullptr);
  } else {
    bad = cpu::OfflineDistillRows<double>(student.data<double>(), teacher.values.data<double>(),
                                          teacher.indices.data<int32_t>(), teacher.rest_lse.data<double>(),
                                          targets.data<int32_t>(), n, v, k, c, grad_scale, losses.data<double>(),
                                          dstudent != nullptr ? dstudent->data<double>() : nullptr);
  }
  if (bad >= 0)
    return Bad("OfflineDistillLoss: row ", bad, " of the teacher's top-k has an id outside [0, ", v, ") or twice");
  return student.dtype() == DType::kF32 ? Sums<float>(losses) : Sums<double>(losses);
}

}  // namespace baton
