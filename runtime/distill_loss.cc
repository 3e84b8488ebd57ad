// DistillLoss (see distill_loss.h): checks the arguments, runs the three row
// passes of kernels/cpu/distill_loss.h (or their CUDA twins), reducing the
// per-row statistics over the tp group between passes, and sums the
// per-row losses in double on the host in row order (deterministic).
#include "runtime/distill_loss.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "kernels/cpu/distill_loss.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/distill_loss.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#endif

namespace baton {
namespace {

absl::Status Bad(auto... parts) { return absl::InvalidArgumentError(absl::StrCat("DistillLoss: ", parts...)); }

absl::Status CheckArgs(const Tensor& student, const Tensor& teacher, const Tensor& targets,
                       const DistillLossOptions& o, const Tensor* dstudent) {
  if (!(o.alpha >= 0 && o.alpha <= 1)) return Bad("alpha=", o.alpha, " must be in [0, 1]");
  if (!(o.temperature > 0) || !std::isfinite(o.temperature)) return Bad("temperature=", o.temperature, " must be > 0");
  if (!student.defined() || student.rank() != 2 || !student.is_contiguous())
    return Bad("student logits must be contiguous (N, V), got ", student.defined() ? student.DebugString() : "undefined");
  if (!teacher.defined() || teacher.shape() != student.shape() || teacher.dtype() != student.dtype() ||
      teacher.device() != student.device() || !teacher.is_contiguous())
    return Bad("teacher logits ", teacher.defined() ? teacher.DebugString() : "undefined",
               " must be like the student's ", student.DebugString());
  if (!targets.defined() || targets.dtype() != DType::kI32 || targets.numel() != student.dim(0) ||
      targets.device() != student.device() || !targets.is_contiguous())
    return Bad("targets must be i32 (", student.dim(0), ") on the logits' device, got ",
               targets.defined() ? targets.DebugString() : "undefined");
  if (dstudent != nullptr && (dstudent->shape() != student.shape() || dstudent->dtype() != student.dtype() ||
                              dstudent->device() != student.device() || !dstudent->is_contiguous()))
    return Bad("dstudent ", dstudent->DebugString(), " must be like the student logits ", student.DebugString());
  const DType t = student.dtype();
  if (student.device() == Device::kCpu && t != DType::kF32 && t != DType::kF64)
    return Bad("CPU logits must be f32 or f64, got ", DTypeName(t));
  if (student.device() == Device::kCuda && t != DType::kF32 && t != DType::kBF16)
    return Bad("CUDA logits must be f32 or bf16, got ", DTypeName(t));
  return absl::OkStatus();
}

// The three passes on the CPU, in the logits' dtype T.
template <typename T>
struct CpuPasses {
  static void Max(const Tensor& s, const Tensor& t, double temp, Tensor& max) {
    cpu::DistillRowMax<T>(s.data<T>(), t.data<T>(), s.dim(0), s.dim(1), temp, max.data<T>());
  }
  static void Sums(const Tensor& s, const Tensor& t, const Tensor& y, int64_t start, double temp, const Tensor& max,
                   Tensor& sums) {
    cpu::DistillRowSums<T>(s.data<T>(), t.data<T>(), y.data<int32_t>(), start, s.dim(0), s.dim(1), temp,
                           max.data<T>(), sums.data<T>());
  }
  static void Loss(const Tensor& y, const Tensor& max, const Tensor& sums, cpu::DistillCoeffs c, Tensor& losses) {
    cpu::DistillRowLoss<T>(y.data<int32_t>(), y.numel(), max.data<T>(), sums.data<T>(), c, losses.data<T>());
  }
  static void Backward(const Tensor& s, const Tensor& t, const Tensor& y, int64_t start, const Tensor& max,
                       const Tensor& sums, cpu::DistillCoeffs c, double scale, Tensor& d) {
    cpu::DistillBackward<T>(s.data<T>(), t.data<T>(), y.data<int32_t>(), start, s.dim(0), s.dim(1), max.data<T>(),
                            sums.data<T>(), c, scale, d.data<T>());
  }
};

// Σ over rows of the (3, N) losses, copied to the host first if needed.
DistillLossSums SumLosses(const Tensor& losses) {
  const int64_t n = losses.dim(1);
  Tensor host = losses;
  if (losses.device() != Device::kCpu) {
    host = Tensor::Empty(losses.shape(), losses.dtype());
    host.CopyFrom(losses);
  }
  auto at = [&](int row, int64_t r) {
    return host.dtype() == DType::kF64 ? host.data<double>()[row * n + r]
                                       : static_cast<double>(host.data<float>()[row * n + r]);
  };
  DistillLossSums out;
  for (int64_t r = 0; r < n; ++r) {
    out.loss += at(cpu::kLossTotal, r);
    out.kl += at(cpu::kLossKl, r);
    out.ce += at(cpu::kLossCe, r);
  }
  return out;
}

#ifdef BATON_HAVE_CUDA
cuda::Float Tag(const Tensor& t) { return t.dtype() == DType::kF32 ? cuda::Float::kF32 : cuda::Float::kBF16; }
float* F32(const Tensor& t) { return static_cast<float*>(t.raw()); }
const int32_t* I32(const Tensor& t) { return static_cast<const int32_t*>(t.raw()); }
#endif

}  // namespace

absl::StatusOr<DistillLossSums> DistillLoss(const Tensor& student, const Tensor& teacher, const Tensor& targets,
                                            const DistillLossOptions& options, double grad_scale, Tensor* dstudent,
                                            TpCollectives* tp, int64_t vocab_start) {
  BATON_RETURN_IF_ERROR(CheckArgs(student, teacher, targets, options, dstudent));
  const bool reduce = tp != nullptr && tp->size() > 1;
  const int64_t n = student.dim(0), v = student.dim(1);
  const cpu::DistillCoeffs c{options.alpha, options.temperature};
  const Tensor y = targets.Reshape({n});
  if (student.device() == Device::kCuda) {
#ifdef BATON_HAVE_CUDA
    Allocator* alloc = DefaultCudaAllocator();
    Tensor max = Tensor::Empty({cpu::kDistillMaxes, n}, DType::kF32, alloc);
    Tensor sums = Tensor::Empty({cpu::kDistillSums, n}, DType::kF32, alloc);
    Tensor losses = Tensor::Empty({cpu::kDistillLosses, n}, DType::kF32, alloc);
    const float temp = static_cast<float>(options.temperature), alpha = static_cast<float>(options.alpha);
    cudaStream_t stream = cuda::CurrentStream();
    BATON_RETURN_IF_ERROR(cuda::DistillRowMax(Tag(student), student.raw(), teacher.raw(), n, v, temp, F32(max), stream));
    if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceMax(max));
    BATON_RETURN_IF_ERROR(cuda::DistillRowSums(Tag(student), student.raw(), teacher.raw(), I32(y), vocab_start, n, v,
                                               temp, F32(max), F32(sums), stream));
    if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceSum(sums));
    BATON_RETURN_IF_ERROR(cuda::DistillRowLoss(I32(y), n, F32(max), F32(sums), alpha, temp, F32(losses), stream));
    if (dstudent != nullptr) {
      BATON_RETURN_IF_ERROR(cuda::DistillBackward(Tag(student), student.raw(), teacher.raw(), I32(y), vocab_start, n,
                                                  v, F32(max), F32(sums), alpha, temp,
                                                  static_cast<float>(grad_scale), dstudent->raw(), stream));
    }
    return SumLosses(losses);
#else
    return absl::FailedPreconditionError("DistillLoss: CUDA tensors in a build without CUDA");
#endif
  }
  const DType t = student.dtype();
  Tensor max = Tensor::Empty({cpu::kDistillMaxes, n}, t), sums = Tensor::Empty({cpu::kDistillSums, n}, t),
         losses = Tensor::Empty({cpu::kDistillLosses, n}, t);
  auto run = [&]<typename T>(CpuPasses<T>) -> absl::Status {
    CpuPasses<T>::Max(student, teacher, options.temperature, max);
    if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceMax(max));
    CpuPasses<T>::Sums(student, teacher, y, vocab_start, options.temperature, max, sums);
    if (reduce) BATON_RETURN_IF_ERROR(tp->AllReduceSum(sums));
    CpuPasses<T>::Loss(y, max, sums, c, losses);
    if (dstudent != nullptr) CpuPasses<T>::Backward(student, teacher, y, vocab_start, max, sums, c, grad_scale, *dstudent);
    return absl::OkStatus();
  };
  BATON_RETURN_IF_ERROR(t == DType::kF32 ? run(CpuPasses<float>{}) : run(CpuPasses<double>{}));
  return SumLosses(losses);
}

}  // namespace baton
