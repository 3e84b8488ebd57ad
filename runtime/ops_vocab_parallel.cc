// The vocab-parallel cross-entropy pieces of the op table (see ops.h): the
// per-row max, sum of exponentials and target logit of one vocabulary
// shard, and the loss and gradient once the model has reduced those over
// the tp group. CPU: f32/f64 logits with statistics of the same dtype; rows
// are independent, so threads split rows and the bits do not depend on the
// thread count. CUDA (kernels/cuda/vocab_parallel_ce.h): f32/bf16 logits,
// f32 statistics, on the current stream.
#include <cmath>

#include "kernels/check.h"
#include "runtime/ops.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/stream.h"
#include "kernels/cuda/vocab_parallel_ce.h"
#include "runtime/op_checks.h"
#include "runtime/op_profile.h"
#endif

namespace baton::ops {
namespace {

#ifdef BATON_HAVE_CUDA
// ---- CUDA entry checks and dispatch

cuda::Float Tag(const Tensor& t) { return t.dtype() == DType::kF32 ? cuda::Float::kF32 : cuda::Float::kBF16; }

void CheckCudaLogits(const char* op, const Tensor& logits) {
  internal::CheckCudaFloat(op, "logits", logits);
  internal::CheckRank(op, "logits", logits, 2);
}
// A per-row statistic: f32 (N) on the device, whatever the logits' dtype.
void CheckCudaStat(const char* op, const char* name, const Tensor& t, int64_t n) {
  internal::CheckCudaContiguous(op, name, t);
  BATON_OP_CHECK(t.dtype() == DType::kF32 && t.shape() == Shape{n}, op, ": ", name, " is ", t.DebugString(),
                 ", expected f32[", n, "]");
}
void CheckCudaTargets(const char* op, const Tensor& t, int64_t n) {
  internal::CheckCudaContiguous(op, "targets", t);
  BATON_OP_CHECK(t.dtype() == DType::kI32 && t.shape() == Shape{n}, op, ": targets is ", t.DebugString(),
                 ", expected i32[", n, "]");
}
void CudaOk(const char* op, const absl::Status& st) { BATON_OP_CHECK(st.ok(), op, ": ", st.ToString()); }
float* F32(const Tensor& t) { return static_cast<float*>(t.raw()); }
const int32_t* I32(const Tensor& t) { return static_cast<const int32_t*>(t.raw()); }
#endif

void CheckRows(const Tensor& logits, const Tensor& per_row, const char* what) {
  BATON_CHECK_MSG(logits.device() == Device::kCpu && logits.rank() == 2 && logits.is_contiguous(),
                  "vocab-parallel cross-entropy runs on contiguous (N, V) CPU logits");
  BATON_CHECK_MSG(per_row.device() == Device::kCpu && per_row.numel() == logits.dim(0) &&
                      per_row.dtype() == logits.dtype() && per_row.is_contiguous(),
                  what);
}

template <typename T>
void RowMaxT(const Tensor& x, Tensor& out) {
  const int64_t n = x.dim(0), v = x.dim(1);
  const T* p = x.data<T>();
  T* o = out.data<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    T m = -INFINITY;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, p[r * v + j]);
    o[r] = m;
  }
}

template <typename T>
void RowSumExpT(const Tensor& x, const Tensor& max, Tensor& out) {
  const int64_t n = x.dim(0), v = x.dim(1);
  const T* p = x.data<T>();
  const T* m = max.data<T>();
  T* o = out.data<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(static_cast<double>(p[r * v + j]) - m[r]);
    o[r] = static_cast<T>(s);
  }
}

template <typename T>
void PickT(const Tensor& x, const Tensor& targets, int64_t start, Tensor& out) {
  const int64_t n = x.dim(0), v = x.dim(1);
  const T* p = x.data<T>();
  const int32_t* t = targets.data<int32_t>();
  T* o = out.data<T>();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t j = static_cast<int64_t>(t[r]) - start;
    o[r] = t[r] >= 0 && j >= 0 && j < v ? p[r * v + j] : T(0);
  }
}

template <typename T>
void CrossEntropyT(const Tensor& x, const Tensor& targets, int64_t start, const Tensor& max, const Tensor& sum,
                   const Tensor& target_logit, Tensor& losses, Tensor* dx, float scale) {
  const int64_t n = x.dim(0), v = x.dim(1);
  const T* p = x.data<T>();
  const int32_t* t = targets.data<int32_t>();
  const T* m = max.data<T>();
  const T* s = sum.data<T>();
  const T* tl = target_logit.data<T>();
  T* l = losses.data<T>();
  T* d = dx != nullptr ? dx->data<T>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    if (t[r] < 0) {
      l[r] = 0;
      if (d != nullptr) {
        for (int64_t j = 0; j < v; ++j) d[r * v + j] = 0;
      }
      continue;
    }
    const double log_sum = std::log(static_cast<double>(s[r]));
    l[r] = static_cast<T>(log_sum + m[r] - tl[r]);
    if (d == nullptr) continue;
    const double inv = 1.0 / static_cast<double>(s[r]);
    const int64_t hit = static_cast<int64_t>(t[r]) - start;
    for (int64_t j = 0; j < v; ++j) {
      const double prob = std::exp(static_cast<double>(p[r * v + j]) - m[r]) * inv;
      d[r * v + j] = static_cast<T>((prob - (j == hit ? 1.0 : 0.0)) * scale);
    }
  }
}

}  // namespace

void RowMax(const Tensor& logits, Tensor& max) {
#ifdef BATON_HAVE_CUDA
  if (logits.device() == Device::kCuda) {
    op_profile::Scope prof_scope("vocab-parallel ce (row max)");
    CheckCudaLogits("RowMax", logits);
    CheckCudaStat("RowMax", "max", max, logits.dim(0));
    return CudaOk("RowMax", cuda::RowMax(Tag(logits), logits.raw(), logits.dim(0), logits.dim(1), F32(max),
                                         cuda::CurrentStream()));
  }
#endif
  CheckRows(logits, max, "RowMax: max must be (N) like the logits");
  logits.dtype() == DType::kF32 ? RowMaxT<float>(logits, max) : RowMaxT<double>(logits, max);
}

void RowSumExp(const Tensor& logits, const Tensor& max, Tensor& sum) {
#ifdef BATON_HAVE_CUDA
  if (logits.device() == Device::kCuda) {
    op_profile::Scope prof_scope("vocab-parallel ce (sum exp)");
    CheckCudaLogits("RowSumExp", logits);
    CheckCudaStat("RowSumExp", "max", max, logits.dim(0));
    CheckCudaStat("RowSumExp", "sum", sum, logits.dim(0));
    return CudaOk("RowSumExp", cuda::RowSumExp(Tag(logits), logits.raw(), F32(max), logits.dim(0), logits.dim(1),
                                               F32(sum), cuda::CurrentStream()));
  }
#endif
  CheckRows(logits, max, "RowSumExp: max must be (N)");
  CheckRows(logits, sum, "RowSumExp: sum must be (N)");
  logits.dtype() == DType::kF32 ? RowSumExpT<float>(logits, max, sum) : RowSumExpT<double>(logits, max, sum);
}

void PickTargets(const Tensor& logits, const Tensor& targets, int64_t vocab_start, Tensor& target_logit) {
#ifdef BATON_HAVE_CUDA
  if (logits.device() == Device::kCuda) {
    op_profile::Scope prof_scope("vocab-parallel ce (pick targets)");
    CheckCudaLogits("PickTargets", logits);
    CheckCudaTargets("PickTargets", targets, logits.dim(0));
    CheckCudaStat("PickTargets", "target_logit", target_logit, logits.dim(0));
    return CudaOk("PickTargets", cuda::PickTargets(Tag(logits), logits.raw(), I32(targets), vocab_start,
                                                   logits.dim(0), logits.dim(1), F32(target_logit),
                                                   cuda::CurrentStream()));
  }
#endif
  CheckRows(logits, target_logit, "PickTargets: target_logit must be (N)");
  BATON_CHECK_MSG(targets.dtype() == DType::kI32 && targets.numel() == logits.dim(0), "PickTargets: targets (N) i32");
  logits.dtype() == DType::kF32 ? PickT<float>(logits, targets, vocab_start, target_logit)
                                : PickT<double>(logits, targets, vocab_start, target_logit);
}

void VocabParallelCrossEntropy(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                               const Tensor& max, const Tensor& sum, const Tensor& target_logit,
                               Tensor& losses, Tensor* dlogits, float grad_scale) {
#ifdef BATON_HAVE_CUDA
  if (logits.device() == Device::kCuda) {
    constexpr const char* kOp = "VocabParallelCrossEntropy";
    op_profile::Scope prof_scope("vocab-parallel ce (loss, grad)");
    const int64_t n = logits.dim(0);
    CheckCudaLogits(kOp, logits);
    CheckCudaTargets(kOp, targets, n);
    CheckCudaStat(kOp, "max", max, n);
    CheckCudaStat(kOp, "sum", sum, n);
    CheckCudaStat(kOp, "target_logit", target_logit, n);
    CheckCudaStat(kOp, "losses", losses, n);
    if (dlogits != nullptr) {
      internal::CheckCudaFloat(kOp, "dlogits", *dlogits);
      BATON_OP_CHECK(dlogits->shape() == logits.shape() && dlogits->dtype() == logits.dtype(), kOp,
                     ": dlogits is ", dlogits->DebugString(), ", expected like logits ", logits.DebugString());
    }
    return CudaOk(kOp, cuda::VocabParallelCrossEntropy(
                           Tag(logits), logits.raw(), I32(targets), vocab_start, F32(max), F32(sum),
                           F32(target_logit), n, logits.dim(1), F32(losses),
                           dlogits != nullptr ? dlogits->raw() : nullptr, grad_scale, cuda::CurrentStream()));
  }
#endif
  CheckRows(logits, losses, "VocabParallelCrossEntropy: losses must be (N)");
  BATON_CHECK_MSG(targets.dtype() == DType::kI32 && targets.numel() == logits.dim(0),
                  "VocabParallelCrossEntropy: targets (N) i32");
  if (dlogits != nullptr) BATON_CHECK(dlogits->shape() == logits.shape() && dlogits->dtype() == logits.dtype());
  logits.dtype() == DType::kF32
      ? CrossEntropyT<float>(logits, targets, vocab_start, max, sum, target_logit, losses, dlogits, grad_scale)
      : CrossEntropyT<double>(logits, targets, vocab_start, max, sum, target_logit, losses, dlogits, grad_scale);
}

}  // namespace baton::ops
