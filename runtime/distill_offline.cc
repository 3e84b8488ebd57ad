// TeacherTopKOf and OfflineDistillLoss (see distill_offline.h): argument
// checks, then the row passes of kernels/cpu/distill_topk.h (or their CUDA
// twins, kernels/cuda/distill_topk.h) with the tp reductions between them;
// losses summed in double on the host in row order.
#include "runtime/distill_offline.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/distill_topk.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/distill_topk.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#endif

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

bool CpuFloat(const Tensor& t) {
  return t.defined() && t.device() == Device::kCpu && t.is_contiguous() &&
         (t.dtype() == DType::kF32 || t.dtype() == DType::kF64);
}

template <typename T>
DistillLossSums Sums(const Tensor& device_losses) {
  Tensor losses = device_losses;
  if (losses.device() != Device::kCpu) {
    losses = Tensor::Empty(device_losses.shape(), device_losses.dtype());
    losses.CopyFrom(device_losses);
  }
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

namespace {

// The first row whose ids leave [0, vocab) or repeat, or -1.
int64_t FirstBadRow(const Tensor& indices, int64_t vocab) {
  const int64_t n = indices.dim(0), k = indices.dim(1);
  std::vector<int32_t> row(k);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t* ids = indices.data<int32_t>() + r * k;
    row.assign(ids, ids + k);
    std::sort(row.begin(), row.end());
    if (row.front() < 0 || row.back() >= vocab || std::adjacent_find(row.begin(), row.end()) != row.end()) return r;
  }
  return -1;
}

bool On(const Tensor& t, Device d, DType dtype) {
  return t.defined() && t.device() == d && t.dtype() == dtype && t.is_contiguous();
}

#ifdef BATON_HAVE_CUDA
// The passes on the GPU: f32 statistics whatever the logits' dtype.
absl::Status CudaPasses(const Tensor& s, const TeacherTopK& t, const Tensor& y, const DistillLossOptions& o,
                        double grad_scale, Tensor* d, TpCollectives* tp, int64_t vocab_start, Tensor& losses) {
  const int64_t n = s.dim(0), v = s.dim(1), k = t.values.dim(1);
  const bool reduce = tp != nullptr && tp->size() > 1;
  const cuda::Float tag = s.dtype() == DType::kF32 ? cuda::Float::kF32 : cuda::Float::kBF16;
  auto f32 = [](const Tensor& x) { return static_cast<float*>(x.raw()); };
  auto i32 = [](const Tensor& x) { return static_cast<const int32_t*>(x.raw()); };
  Allocator* alloc = DefaultCudaAllocator();
  Tensor max = Tensor::Empty({n}, DType::kF32, alloc);
  Tensor sums = Tensor::Empty({cpu::kOfflineSums + k, n}, DType::kF32, alloc);
  Tensor norm = Tensor::Empty({2, n}, DType::kF32, alloc);  // the teacher's L and p_rest per row
  const float temp = static_cast<float>(o.temperature), alpha = static_cast<float>(o.alpha);
  cudaStream_t stream = cuda::CurrentStream();
  BATON_RETURN_IF_ERROR(cuda::OfflineRowMax(tag, s.raw(), n, v, f32(max), stream));
  if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceMax(max));
  BATON_RETURN_IF_ERROR(cuda::OfflineRowSums(tag, s.raw(), i32(t.indices), i32(y), vocab_start, n, v, k, temp,
                                             f32(max), f32(sums), stream));
  if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceSum(sums));
  BATON_RETURN_IF_ERROR(cuda::OfflineRowLoss(f32(t.values), f32(t.rest_lse), i32(y), n, k, f32(max), f32(sums), alpha,
                                             temp, f32(losses), f32(norm), stream));
  if (d == nullptr) return absl::OkStatus();
  return cuda::OfflineBackward(tag, s.raw(), f32(t.values), i32(t.indices), i32(y), vocab_start, n, v, k, f32(max),
                               f32(sums), f32(norm), alpha, temp, static_cast<float>(grad_scale), d->raw(), stream);
}
#endif

// OfflineDistillLoss on CUDA tensors: the shapes and dtypes checked here, the ids where they were uploaded.
absl::StatusOr<DistillLossSums> OfflineDistillLossCuda(const Tensor& student, const TeacherTopK& teacher,
                                                       const Tensor& targets, const DistillLossOptions& o,
                                                       double grad_scale, Tensor* dstudent, TpCollectives* tp,
                                                       int64_t vocab_start) {
  if (student.rank() != 2 || !student.is_contiguous() ||
      (student.dtype() != DType::kF32 && student.dtype() != DType::kBF16))
    return Bad("OfflineDistillLoss: CUDA student logits must be contiguous f32/bf16 (N, V), got ",
               student.DebugString());
  const int64_t n = student.dim(0);
  const int64_t k = teacher.values.defined() && teacher.values.rank() == 2 ? teacher.values.dim(1) : 0;
  if (k < 1 || teacher.values.shape() != Shape{n, k} || !On(teacher.values, Device::kCuda, DType::kF32) ||
      teacher.indices.shape() != Shape{n, k} || !On(teacher.indices, Device::kCuda, DType::kI32) ||
      teacher.rest_lse.shape() != Shape{n} || !On(teacher.rest_lse, Device::kCuda, DType::kF32))
    return Bad("OfflineDistillLoss: on the GPU the teacher's top-k must be CUDA f32 values (N, k), i32 indices (N, k)"
               " and f32 rest_lse (N) (TeacherTopKUpload), got values ", teacher.values.DebugString(), ", indices ",
               teacher.indices.DebugString(), ", rest_lse ", teacher.rest_lse.DebugString(), " for student ",
               student.DebugString());
  if (!On(targets, Device::kCuda, DType::kI32) || targets.numel() != n)
    return Bad("OfflineDistillLoss: targets must be CUDA i32 (", n, "), got ", targets.DebugString());
  if (dstudent != nullptr && (dstudent->shape() != student.shape() || !On(*dstudent, Device::kCuda, student.dtype())))
    return Bad("OfflineDistillLoss: dstudent ", dstudent->DebugString(), " must be like ", student.DebugString());
#ifdef BATON_HAVE_CUDA
  Tensor losses = Tensor::Empty({3, n}, DType::kF32, DefaultCudaAllocator());
  BATON_RETURN_IF_ERROR(CudaPasses(student, teacher, targets.Reshape({n}), o, grad_scale, dstudent, tp, vocab_start,
                                   losses));
  return Sums<float>(losses);
#else
  return absl::FailedPreconditionError("OfflineDistillLoss: CUDA tensors in a build without CUDA");
#endif
}

template <typename T>
absl::Status OfflinePasses(const Tensor& s, const TeacherTopK& t, const Tensor& y, const cpu::DistillCoeffs c,
                           double grad_scale, Tensor* d, TpCollectives* tp, int64_t vocab_start, Tensor& losses) {
  const int64_t n = s.dim(0), v = s.dim(1), k = t.values.dim(1);
  const bool reduce = tp != nullptr && tp->size() > 1;
  Tensor max = Tensor::Empty({n}, s.dtype()), sums = Tensor::Empty({cpu::kOfflineSums + k, n}, s.dtype());
  cpu::OfflineRowMax<T>(s.data<T>(), n, v, max.data<T>());
  if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceMax(max));
  cpu::OfflineRowSums<T>(s.data<T>(), t.indices.data<int32_t>(), y.data<int32_t>(), vocab_start, n, v, k,
                         c.temperature, max.data<T>(), sums.data<T>());
  if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceSum(sums));
  cpu::OfflineRowLoss<T>(t.values.data<T>(), t.rest_lse.data<T>(), y.data<int32_t>(), n, k, max.data<T>(),
                         sums.data<T>(), c, losses.data<T>());
  if (d != nullptr) {
    cpu::OfflineBackward<T>(s.data<T>(), t.values.data<T>(), t.indices.data<int32_t>(), t.rest_lse.data<T>(),
                            y.data<int32_t>(), vocab_start, n, v, k, max.data<T>(), sums.data<T>(), c, grad_scale,
                            d->data<T>());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DistillLossSums> OfflineDistillLoss(const Tensor& student, const TeacherTopK& teacher,
                                                   const Tensor& targets, const DistillLossOptions& o,
                                                   double grad_scale, Tensor* dstudent, TpCollectives* tp,
                                                   int64_t vocab_start) {
  if (!(o.alpha >= 0 && o.alpha <= 1)) return Bad("OfflineDistillLoss: alpha=", o.alpha, " must be in [0, 1]");
  if (o.temperature != teacher.temperature)
    return Bad("distill.temperature=", o.temperature, " but the teacher's top-k logits were stored at temperature ",
               teacher.temperature, " (their rest log-sum-exp depends on it: dump them again)");
  if (student.defined() && student.device() == Device::kCuda)
    return OfflineDistillLossCuda(student, teacher, targets, o, grad_scale, dstudent, tp, vocab_start);
  if (!CpuFloat(student) || student.rank() != 2)
    return Bad("OfflineDistillLoss: student logits must be contiguous CPU f32/f64 (N, V), got ", student.DebugString());
  const int64_t n = student.dim(0), v = student.dim(1), vocab = v * (tp != nullptr ? tp->size() : 1);
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
    if (targets.data<int32_t>()[r] >= vocab)
      return Bad("OfflineDistillLoss: target ", targets.data<int32_t>()[r], " of row ", r, " is >= vocab size ", vocab);
  }
  BATON_RETURN_IF_ERROR(CheckTeacherTopKIds(teacher, vocab));
  if (dstudent != nullptr && (dstudent->shape() != student.shape() || dstudent->dtype() != student.dtype() ||
                              !CpuFloat(*dstudent)))
    return Bad("OfflineDistillLoss: dstudent ", dstudent->DebugString(), " must be like ", student.DebugString());
  const cpu::DistillCoeffs c{o.alpha, o.temperature};
  const Tensor y = targets.Reshape({n});
  Tensor losses = Tensor::Empty({3, n}, student.dtype());
  if (student.dtype() == DType::kF32) {
    BATON_RETURN_IF_ERROR(OfflinePasses<float>(student, teacher, y, c, grad_scale, dstudent, tp, vocab_start, losses));
    return Sums<float>(losses);
  }
  BATON_RETURN_IF_ERROR(OfflinePasses<double>(student, teacher, y, c, grad_scale, dstudent, tp, vocab_start, losses));
  return Sums<double>(losses);
}

absl::Status CheckTeacherTopKIds(const TeacherTopK& teacher, int64_t vocab) {
  if (!On(teacher.indices, Device::kCpu, DType::kI32) || teacher.indices.rank() != 2)
    return Bad("teacher top-k indices must be CPU i32 (N, k), got ", teacher.indices.DebugString());
  if (const int64_t bad = FirstBadRow(teacher.indices, vocab); bad >= 0)
    return Bad("OfflineDistillLoss: row ", bad, " of the teacher's top-k has an id outside [0, ", vocab, ") or twice");
  return absl::OkStatus();
}

}  // namespace baton
