// The device half of Model (see model.h): on CUDA the params live in three
// flat buffers with one layout (f32 master values, f32 grads, and the bf16
// compute copy when compute is bf16), so ZeroGrad is one memset, the clip
// norm one reduction and the weight refresh one conversion. Init draws the
// weights on the device with the same counter-based RNG as the CPU model
// (runtime/param_init_device.h), so CPU and CUDA models start from identical
// bits (a tensor-parallel shard: its block of the logical tensor, as on the
// CPU).
#include <algorithm>
#include <cmath>
#include <future>
#include <string>

#include "runtime/cuda_allocator.h"
#include "runtime/model.h"
#include "runtime/ops.h"
#include "runtime/param_init_device.h"
#include "runtime/rng.h"
#ifdef BATON_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/stream.h"
#endif

namespace baton {
namespace {

// Offsets are multiples of 128 elements: 512 B for f32, 256 B for bf16,
// enough for any vectorised kernel and cuBLASLt's alignment preferences.
constexpr int64_t kAlignElems = 128;

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t x : s) n *= x;
  return n;
}

}  // namespace

void Model::AllocateDeviceParams() {
  BATON_CHECK(device_ == Device::kCuda);
  Allocator* alloc = DefaultCudaAllocator();
  format_ = ActivationFormat{dtype_, DType::kF32, alloc, /*store_probs=*/false};
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const Shape& s : shapes_) {
    offsets.push_back(total);
    total += RoundUp(Numel(s), kAlignElems);
  }
  // Zeros, padding included: the flat norm and conversions read the padding.
  // Forward-only: the weights in the compute dtype, nothing else.
  flat_values_ = Tensor::Zeros({total}, forward_only_ ? dtype_ : DType::kF32, alloc);
  if (!forward_only_) flat_grads_ = Tensor::Zeros({total}, DType::kF32, alloc);
  if (dtype_ != DType::kF32 && !forward_only_) flat_compute_ = Tensor::Zeros({total}, dtype_, alloc);
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = Numel(shapes_[i]);
    params_[i].value = flat_values_.Slice(offsets[i], n).Reshape(shapes_[i]);
    if (flat_grads_.defined()) params_[i].grad = flat_grads_.Slice(offsets[i], n).Reshape(shapes_[i]);
    if (flat_compute_.defined()) {
      params_[i].compute = flat_compute_.Slice(offsets[i], n).Reshape(shapes_[i]);
    }
  }
}

void Model::InitOnDevice(uint64_t seed) {
#ifdef BATON_HAVE_CUDA
  for (size_t i = 0; i < params_.size(); ++i) {  // drawn in place: no host draw, no copy
    const InitKind k = init_kind_[i];
    const absl::Status s = InitParamOnDevice(
        params_[i], k == InitKind::kNormal ? ParamInit::Normal(init_std_[i]) : ParamInit::Constant(k == InitKind::kOnes ? 1.0f : 0.0f),
        seed);
    BATON_CHECK_MSG(s.ok(), std::string(s.message()).c_str());
  }
  // Values complete on return, as with the host draw (other streams may read them).
  BATON_CHECK(cudaStreamSynchronize(cuda::CurrentStream()) == cudaSuccess);
  return RefreshComputeWeights();
#endif
  // Each param is filled on the host (chunks in parallel), then copied up.
  // Two pinned staging buffers alternate: while one param's copy runs on
  // the stream, the host fills the next into the other buffer, and the
  // fill writes pages that are already mapped (no fresh-memory faults).
  constexpr int64_t kChunk = int64_t{1} << 16;
  int64_t largest = 0;
  for (const Param& p : params_) largest = std::max(largest, p.value.numel());
  auto fill = [&](size_t i, float* h) {
    const int64_t n = params_[i].value.numel();
    switch (init_kind_[i]) {
      case InitKind::kOnes: std::fill(h, h + n, 1.0f); break;
      case InitKind::kZeros: std::fill(h, h + n, 0.0f); break;
      case InitKind::kNormal: {
        const Param& p = params_[i];
        if (p.shard_dim >= 0) {  // this rank's block of the logical (R, C) tensor, as on the CPU
          Tensor view = Tensor::Borrow(h, p.value.shape(), DType::kF32);
          const int64_t row0 = p.shard_dim == 0 ? p.shard_offset : 0, col0 = p.shard_dim == 1 ? p.shard_offset : 0;
          FillNormal2D(view, seed, p.name, init_std_[i], p.full_shape[1], row0, col0);
          break;
        }
        const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic)
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t start = c * kChunk;
          Tensor view = Tensor::Borrow(h + start, {std::min(kChunk, n - start)}, DType::kF32);
          FillNormal(view, seed, params_[i].name, init_std_[i], start);
        }
        break;
      }
    }
  };
#ifdef BATON_HAVE_CUDA
  cudaStream_t stream = cuda::CurrentStream();
  float* staging[2] = {nullptr, nullptr};
  cudaEvent_t copied[2] = {nullptr, nullptr};
  bool pinned = true;
  for (int b = 0; b < 2 && pinned; ++b) {
    pinned = cudaHostAlloc(reinterpret_cast<void**>(&staging[b]), static_cast<size_t>(largest) * sizeof(float),
                           cudaHostAllocDefault) == cudaSuccess &&
             cudaEventCreateWithFlags(&copied[b], cudaEventDisableTiming) == cudaSuccess;
  }
  if (pinned) {
    for (size_t i = 0; i < params_.size(); ++i) {
      const int b = static_cast<int>(i % 2);
      BATON_CHECK(cudaEventSynchronize(copied[b]) == cudaSuccess);  // the buffer's last copy is done
      fill(i, staging[b]);
      BATON_CHECK(cudaMemcpyAsync(params_[i].value.raw(), staging[b], params_[i].value.nbytes(),
                                  cudaMemcpyHostToDevice, stream) == cudaSuccess);
      BATON_CHECK(cudaEventRecord(copied[b], stream) == cudaSuccess);
    }
    BATON_CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  }
  for (int b = 0; b < 2; ++b) {
    if (copied[b] != nullptr) cudaEventDestroy(copied[b]);
    if (staging[b] != nullptr) cudaFreeHost(staging[b]);
  }
  cudaGetLastError();  // a failed pinned allocation is not an error: the pageable path follows
  if (pinned) return RefreshComputeWeights();
#endif
  for (size_t i = 0; i < params_.size(); ++i) {  // pageable fallback
    Tensor host = Tensor::Empty({params_[i].value.numel()}, DType::kF32);
    fill(i, host.data<float>());
    params_[i].value.CopyFrom(host.Reshape(params_[i].value.shape()));  // synchronous: host may be freed
  }
  RefreshComputeWeights();
}

void Model::RefreshComputeWeights() {
  if (!flat_compute_.defined()) return;
#ifdef BATON_HAVE_CUDA
  Keep(ops::Convert(flat_values_, flat_compute_));
#endif
}

Tensor Model::OnDevice(const Tensor& t, Tensor& staging) const {
  if (t.device() == device_) return t;
  BATON_CHECK_MSG(staging.defined() && staging.shape() == t.shape(), t.DebugString().c_str());
  staging.CopyFrom(t);
  return staging;
}

std::future<absl::Status> Model::PrepareKernelsAsync(int64_t batch, int64_t seq) const {
#ifdef BATON_HAVE_CUDA
  if (device_ == Device::kCuda) {
    int device = 0;
    if (cudaGetDevice(&device) == cudaSuccess) {  // the caller's device, for the helper thread
      const cuda::Float t = format_.dtype == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32;
      const cuda::AttentionDims dims{batch, seq, config_.heads / tp_->size(), config_.kv_heads / tp_->size(),
                                     config_.head_dim()};
      return std::async(std::launch::async, [t, dims, device] { return cuda::PrepareAttention(t, dims, device); });
    }
    cudaGetLastError();
  }
#endif
  std::promise<absl::Status> ready;
  ready.set_value(absl::OkStatus());
  return ready.get_future();
}

}  // namespace baton
