// Pinned, double-buffered uploads of the teacher's top-k rows (see
// distill_offline_upload.h).
#include "runtime/distill_offline_upload.h"

#include <cstring>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "runtime/cuda_allocator.h"

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/stream.h"
#endif

namespace baton {

#ifdef BATON_HAVE_CUDA
namespace {

absl::Status FromCuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("teacher top-k upload: ", what, ": ", cudaGetErrorString(e)));
}

cudaEvent_t AsEvent(void* e) { return static_cast<cudaEvent_t>(e); }

// Bytes of one micro-batch's rows on the device: f32 values, i32 ids, f32 rest_lse.
size_t RowBytes(const TeacherTopK& t) { return static_cast<size_t>(2 * t.values.numel() + t.rest_lse.numel()) * 4; }

// f32 copy of a CPU f32/f64 tensor into dst.
void PutF32(const Tensor& src, float* dst) {
  if (src.dtype() == DType::kF32) {
    std::memcpy(dst, src.raw(), static_cast<size_t>(src.numel()) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < src.numel(); ++i) dst[i] = static_cast<float>(src.data<double>()[i]);
}

bool SameShapes(const TeacherTopK& a, const TeacherTopK& b) {
  return a.values.shape() == b.values.shape() && a.rest_lse.shape() == b.rest_lse.shape();
}

}  // namespace
#endif

absl::StatusOr<std::unique_ptr<TeacherTopKUpload>> TeacherTopKUpload::Create() {
#ifdef BATON_HAVE_CUDA
  std::unique_ptr<TeacherTopKUpload> u(new TeacherTopKUpload());
  for (void*& e : u->copied_) {
    cudaEvent_t ev = nullptr;
    BATON_RETURN_IF_ERROR(FromCuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate"));
    e = ev;
  }
  return u;
#else
  return absl::FailedPreconditionError("the teacher's top-k rows on the GPU need a CUDA build");
#endif
}

TeacherTopKUpload::~TeacherTopKUpload() {
#ifdef BATON_HAVE_CUDA
  // The pinned block must not go while a copy out of it is queued.
  for (void* e : copied_) {
    if (e != nullptr) {
      cudaEventSynchronize(AsEvent(e));
      cudaEventDestroy(AsEvent(e));
    }
  }
  if (pinned_ != nullptr) cudaFreeHost(pinned_);
#endif
}

absl::Status TeacherTopKUpload::Reserve(size_t bytes_per_set) {
#ifdef BATON_HAVE_CUDA
  if (bytes_per_set <= bytes_per_set_) return absl::OkStatus();
  for (int k = 0; k < 2; ++k) {
    if (recorded_[k]) BATON_RETURN_IF_ERROR(FromCuda(cudaEventSynchronize(AsEvent(copied_[k])), "waiting for a copy"));
  }
  if (pinned_ != nullptr) BATON_RETURN_IF_ERROR(FromCuda(cudaFreeHost(pinned_), "cudaFreeHost"));
  pinned_ = nullptr;
  bytes_per_set_ = 0;
  BATON_RETURN_IF_ERROR(FromCuda(cudaHostAlloc(&pinned_, 2 * bytes_per_set, cudaHostAllocDefault), "cudaHostAlloc"));
  bytes_per_set_ = bytes_per_set;
#endif
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TeacherTopK>> TeacherTopKUpload::Upload(const std::vector<TeacherTopK>& host,
                                                                   int64_t vocab) {
#ifdef BATON_HAVE_CUDA
  size_t bytes = 0;
  for (size_t m = 0; m < host.size(); ++m) {
    const TeacherTopK& t = host[m];
    const int64_t n = t.rest_lse.defined() ? t.rest_lse.numel() : -1;
    const bool ok = t.values.defined() && t.values.device() == Device::kCpu && t.values.rank() == 2 &&
                    t.values.dim(0) == n && t.values.is_contiguous() && t.rest_lse.device() == Device::kCpu &&
                    t.rest_lse.is_contiguous() && t.values.dtype() == t.rest_lse.dtype() &&
                    (t.values.dtype() == DType::kF32 || t.values.dtype() == DType::kF64) &&
                    t.indices.defined() && t.indices.shape() == t.values.shape();
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("teacher top-k of micro-batch ", m, ": values ",
                                                     t.values.DebugString(), ", rest_lse ", t.rest_lse.DebugString(),
                                                     " are not CPU f32/f64 rows of one shape"));
    }
    if (absl::Status s = CheckTeacherTopKIds(t, vocab); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("micro-batch ", m, ": ", s.message()));
    }
    bytes += RowBytes(t);
  }
  BATON_RETURN_IF_ERROR(Reserve(bytes));
  current_ = 1 - current_;
  if (recorded_[current_]) {
    BATON_RETURN_IF_ERROR(FromCuda(cudaEventSynchronize(AsEvent(copied_[current_])), "waiting for a copy"));
  }
  if (device_.size() != host.size() || (!host.empty() && !SameShapes(device_[0], host[0]))) device_.clear();
  Allocator* alloc = DefaultCudaAllocator();
  cudaStream_t stream = cuda::CurrentStream();
  char* p = static_cast<char*>(pinned_) + current_ * bytes_per_set_;
  for (size_t m = 0; m < host.size(); ++m) {
    const TeacherTopK& t = host[m];
    if (device_.size() <= m || !SameShapes(device_[m], t)) {
      device_.resize(m + 1);
      device_[m] = TeacherTopK{Tensor::Empty(t.values.shape(), DType::kF32, alloc),
                               Tensor::Empty(t.indices.shape(), DType::kI32, alloc),
                               Tensor::Empty(t.rest_lse.shape(), DType::kF32, alloc), t.temperature};
    }
    device_[m].temperature = t.temperature;
    const size_t vb = static_cast<size_t>(t.values.numel()) * 4, rb = static_cast<size_t>(t.rest_lse.numel()) * 4;
    PutF32(t.values, reinterpret_cast<float*>(p));
    std::memcpy(p + vb, t.indices.raw(), vb);
    PutF32(t.rest_lse, reinterpret_cast<float*>(p + 2 * vb));
    for (auto [dst, off, len] : {std::tuple{&device_[m].values, size_t{0}, vb}, std::tuple{&device_[m].indices, vb, vb},
                                 std::tuple{&device_[m].rest_lse, 2 * vb, rb}}) {
      BATON_RETURN_IF_ERROR(
          FromCuda(cudaMemcpyAsync(dst->raw(), p + off, len, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync"));
    }
    p += vb * 2 + rb;
  }
  BATON_RETURN_IF_ERROR(FromCuda(cudaEventRecord(AsEvent(copied_[current_]), stream), "cudaEventRecord"));
  recorded_[current_] = true;
  return device_;
#else
  return absl::FailedPreconditionError("the teacher's top-k rows on the GPU need a CUDA build");
#endif
}

}  // namespace baton
