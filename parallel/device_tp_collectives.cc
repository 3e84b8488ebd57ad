// DeviceTpCollectives (see device_tp_collectives.h). Compiled only with
// BATON_HAVE_CUDA. The staged path relies on Tensor::CopyFrom synchronising
// the current stream whenever one side is on the host, so the device data
// is complete before MPI reads it and the host buffer may be freed after.
#ifdef BATON_HAVE_CUDA

#include "parallel/device_tp_collectives.h"

#include <cuda_runtime.h>

#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/convert.h"
#include "parallel/mpi_check.h"
#include "parallel/tp_collectives.h"

#define BATON_CHECK_CUDA_IN_TP(x) BATON_RETURN_IF_ERROR(::baton::FromCudaInNccl((x), #x, __FILE__, __LINE__))

namespace baton {
namespace {

bool IsHalf(DType d) { return d == DType::kBF16 || d == DType::kF16; }

// A host copy of device tensor d; bf16/f16 widened to f32 when `widen`
// (the MPI reductions take f32, f64, i32).
Tensor ToHost(const Tensor& d, bool widen) {
  Tensor h = Tensor::Empty(d.shape(), d.dtype());
  h.CopyFrom(d);  // synchronises the stream: the device values are final
  if (!widen || !IsHalf(d.dtype())) return h;
  Tensor w = Tensor::Empty(d.shape(), DType::kF32);
  const auto* in = static_cast<const uint16_t*>(h.raw());
  if (d.dtype() == DType::kBF16) {
    cpu::Bf16ToF32(in, h.numel(), w.data<float>());
  } else {
    cpu::F16ToF32(in, h.numel(), w.data<float>());
  }
  return w;
}

// d = h, rounding an f32 h to d's bf16/f16 once.
void ToDevice(const Tensor& h, Tensor& d) {
  if (h.dtype() == d.dtype()) return d.CopyFrom(h);
  Tensor n = Tensor::Empty(d.shape(), d.dtype());
  auto* out = static_cast<uint16_t*>(n.raw());
  if (d.dtype() == DType::kBF16) {
    cpu::F32ToBf16(h.data<float>(), h.numel(), out);
  } else {
    cpu::F32ToF16(h.data<float>(), h.numel(), out);
  }
  d.CopyFrom(n);  // synchronous from the host: n may be freed on return
}

absl::Status Context(absl::Status st, const char* op) {
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat("tp ", op, " (host-staged): ", st.message()));
}

}  // namespace

absl::StatusOr<bool> GroupOnDistinctDevices(MPI_Comm group, int* devices) {
  int device = 0;
  BATON_CHECK_CUDA_IN_TP(cudaGetDevice(&device));
  cudaDeviceProp prop;
  BATON_CHECK_CUDA_IN_TP(cudaGetDeviceProperties(&prop, device));
  int size = 0;
  BATON_CHECK_MPI(MPI_Comm_size(group, &size));
  std::vector<char> all(static_cast<size_t>(size) * sizeof(prop.uuid.bytes));
  BATON_CHECK_MPI(MPI_Allgather(prop.uuid.bytes, sizeof(prop.uuid.bytes), MPI_BYTE, all.data(),
                                sizeof(prop.uuid.bytes), MPI_BYTE, group));
  std::set<std::string> distinct;
  for (int r = 0; r < size; ++r) {
    distinct.emplace(all.data() + r * sizeof(prop.uuid.bytes), sizeof(prop.uuid.bytes));
  }
  if (devices != nullptr) *devices = static_cast<int>(distinct.size());
  return static_cast<int>(distinct.size()) == size;
}

absl::StatusOr<std::unique_ptr<DeviceTpCollectives>> DeviceTpCollectives::Create(MpiCommunicator& host,
                                                                                 cudaStream_t stream, TpPath path) {
  int devices = 0;
  BATON_ASSIGN_OR_RETURN(const bool distinct, GroupOnDistinctDevices(host.comm(), &devices));
  const int n = host.size();
  const std::string where = absl::StrCat(n, " ranks on ", devices, devices == 1 ? " device" : " devices");
  if (path == TpPath::kNccl && !distinct) {
    return absl::FailedPreconditionError(
        absl::StrCat("tp collectives over NCCL: ", where, "; NCCL needs a distinct device per rank"));
  }
  if (path == TpPath::kHostStaged || !distinct) {
    std::string why = path == TpPath::kHostStaged ? "asked for" : "NCCL needs a distinct device per rank";
    return std::unique_ptr<DeviceTpCollectives>(
        new DeviceTpCollectives(host, nullptr, absl::StrCat("host-staged (", where, ": ", why, ")")));
  }
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> nccl, NcclCommunicator::Create(host.comm(), stream, "tp"));
  return std::unique_ptr<DeviceTpCollectives>(
      new DeviceTpCollectives(host, std::move(nccl), absl::StrCat("nccl (", where, ")")));
}

absl::Status DeviceTpCollectives::AllReduceSum(Tensor& t) {
  if (nccl_ != nullptr) return nccl_->AllReduceSum(t);
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor("all_reduce_sum", t, Device::kCuda), "all_reduce_sum"));
  Tensor h = ToHost(t, /*widen=*/true);
  BATON_RETURN_IF_ERROR(Context(host_.AllReduceSum(h), "all_reduce_sum"));
  ToDevice(h, t);
  return absl::OkStatus();
}

absl::Status DeviceTpCollectives::AllReduceMax(Tensor& t) {
  if (nccl_ != nullptr) return nccl_->AllReduceMax(t);
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor("all_reduce_max", t, Device::kCuda), "all_reduce_max"));
  Tensor h = ToHost(t, /*widen=*/true);  // widening is exact: the max is the same value
  CommTpCollectives host_max(host_);
  BATON_RETURN_IF_ERROR(Context(host_max.AllReduceMax(h), "all_reduce_max"));
  ToDevice(h, t);
  return absl::OkStatus();
}

absl::Status DeviceTpCollectives::AllGather(const Tensor& in, Tensor& out) {
  if (nccl_ != nullptr) return nccl_->AllGather(in, out);
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor("all_gather", in, Device::kCuda), "all_gather"));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor("all_gather", out, Device::kCuda), "all_gather"));
  BATON_RETURN_IF_ERROR(Context(CheckShardShapes("all_gather", out, in, size()), "all_gather"));
  // Copied before gathering, so `in` may be this rank's shard of `out`.
  Tensor h_in = ToHost(in, /*widen=*/false);
  Tensor h_out = Tensor::Empty(out.shape(), out.dtype());
  BATON_RETURN_IF_ERROR(Context(host_.AllGather(h_in, h_out), "all_gather"));
  out.CopyFrom(h_out);
  return absl::OkStatus();
}

absl::Status DeviceTpCollectives::ReduceScatterSum(const Tensor& in, Tensor& out) {
  if (nccl_ != nullptr) return nccl_->ReduceScatterSum(in, out);
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor("reduce_scatter_sum", in, Device::kCuda), "reduce_scatter_sum"));
  BATON_RETURN_IF_ERROR(Context(CheckCommTensor("reduce_scatter_sum", out, Device::kCuda), "reduce_scatter_sum"));
  BATON_RETURN_IF_ERROR(Context(CheckShardShapes("reduce_scatter_sum", in, out, size()), "reduce_scatter_sum"));
  Tensor h_in = ToHost(in, /*widen=*/true);
  Tensor h_out = Tensor::Empty(out.shape(), h_in.dtype());
  BATON_RETURN_IF_ERROR(Context(host_.ReduceScatterSum(h_in, h_out), "reduce_scatter_sum"));
  ToDevice(h_out, out);
  return absl::OkStatus();
}

}  // namespace baton

#endif  // BATON_HAVE_CUDA
