// A small owner of cuDNN backend-API graphs (cuDNN 9, no cudnn-frontend):
// CudnnDesc owns one backend descriptor; CudnnGraph creates tensors (each with a fresh
// uid) and operations (pointwise, matmul, reduction, reshape), keeps every
// descriptor alive for as long as a plan made from it, and names the node in
// any error; FinalizeGraph turns the ops into an execution plan through
// heuristics. Used by cudnn_attention.cc; only compiled with cuDNN.
#pragma once

#ifdef BATON_HAVE_CUDNN

#include <cudnn.h>

#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cudnn_check.h"

namespace baton::cuda {

// Adds the graph node's name to a failing status: "attention fwd: exp_s: <cuDNN error>".
inline absl::Status CudnnContext(absl::Status s, const std::string& where) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
}
// BATON_CHECK_CUDNN with the node's name in front of the message.
#define BATON_CUDNN_IN(x, where) \
  BATON_RETURN_IF_ERROR(         \
      ::baton::cuda::CudnnContext(::baton::FromCudnn((x), #x, __FILE__, __LINE__), (where)))

// Owner of one backend descriptor.
class CudnnDesc {
 public:
  CudnnDesc() = default;
  CudnnDesc(const CudnnDesc&) = delete;
  CudnnDesc& operator=(const CudnnDesc&) = delete;
  ~CudnnDesc() {
    if (d_ != nullptr) cudnnBackendDestroyDescriptor(d_);
  }
  absl::Status Create(cudnnBackendDescriptorType_t type) {
    BATON_CHECK_CUDNN(cudnnBackendCreateDescriptor(type, &d_));
    return absl::OkStatus();
  }
  cudnnBackendDescriptor_t get() const { return d_; }
  void Swap(CudnnDesc& other) { std::swap(d_, other.d_); }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

using CudnnDims = std::array<int64_t, 4>;

// The descriptors of one operation graph, kept alive with the plan made from it.
class CudnnGraph {
 public:
  struct Tensor {
    cudnnBackendDescriptor_t desc;
    int64_t uid;
  };

  absl::StatusOr<Tensor> AddTensor(const std::string& name, cudnnDataType_t type, CudnnDims dims,
                                   CudnnDims strides, bool is_virtual, bool by_value = false) {
    const std::string where = absl::StrCat("tensor ", name);
    CudnnDesc& t = New();
    BATON_RETURN_IF_ERROR(CudnnContext(t.Create(CUDNN_BACKEND_TENSOR_DESCRIPTOR), where));
    const int64_t uid = next_uid_++;
    const int64_t alignment = 16;
    const bool is_virtual_flag = is_virtual, by_value_flag = by_value;
    BATON_CUDNN_IN(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE,
                                            CUDNN_TYPE_DATA_TYPE, 1, &type),
                   where);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64,
                                            4, dims.data()),
                   where);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4,
                                            strides.data()),
                   where);
    BATON_CUDNN_IN(
        cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid),
        where);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT,
                                            CUDNN_TYPE_INT64, 1, &alignment),
                   where);
    if (is_virtual)
      BATON_CUDNN_IN(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_IS_VIRTUAL,
                                              CUDNN_TYPE_BOOLEAN, 1, &is_virtual_flag),
                     where);
    if (by_value)
      BATON_CUDNN_IN(cudnnBackendSetAttribute(t.get(), CUDNN_ATTR_TENSOR_IS_BY_VALUE,
                                              CUDNN_TYPE_BOOLEAN, 1, &by_value_flag),
                     where);
    BATON_CUDNN_IN(cudnnBackendFinalize(t.get()), where);
    return Tensor{t.get(), uid};
  }
  // A virtual f32 tensor (the frontend's intermediate type).
  absl::StatusOr<Tensor> Virtual(const std::string& name, CudnnDims dims, CudnnDims strides,
                                 cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    return AddTensor(name, type, dims, strides, /*is_virtual=*/true);
  }
  absl::StatusOr<Tensor> Scalar(const std::string& name) {
    return AddTensor(name, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, /*is_virtual=*/false,
                     /*by_value=*/true);
  }

  // y = mode(x[, b[, t]]); t is BINARY_SELECT's condition (y = t ? x : b).
  absl::Status Pointwise(const std::string& name, cudnnPointwiseMode_t mode, const Tensor& x,
                         const Tensor* b, const Tensor& y,
                         cudnnDataType_t compute = CUDNN_DATA_FLOAT, int64_t axis = -1,
                         const Tensor* t = nullptr) {
    CudnnDesc& pw = New();
    BATON_RETURN_IF_ERROR(CudnnContext(pw.Create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR), name));
    BATON_CUDNN_IN(cudnnBackendSetAttribute(pw.get(), CUDNN_ATTR_POINTWISE_MODE,
                                            CUDNN_TYPE_POINTWISE_MODE, 1, &mode),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(pw.get(), CUDNN_ATTR_POINTWISE_MATH_PREC,
                                            CUDNN_TYPE_DATA_TYPE, 1, &compute),
                   name);
    if (axis >= 0)
      BATON_CUDNN_IN(
          cudnnBackendSetAttribute(pw.get(), CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis),
          name);
    BATON_CUDNN_IN(cudnnBackendFinalize(pw.get()), name);
    CudnnDesc& op = New();
    BATON_RETURN_IF_ERROR(
        CudnnContext(op.Create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR), name));
    cudnnBackendDescriptor_t pwd = pw.get();
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pwd),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_XDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.desc),
                   name);
    if (b != nullptr)
      BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_BDESC,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b->desc),
                     name);
    if (t != nullptr)
      BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_TDESC,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t->desc),
                     name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_YDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendFinalize(op.get()), name);
    ops_.push_back(op.get());
    return absl::OkStatus();
  }

  // c = a · b (batched over the first two dims; b's head dim may divide a's: GQA).
  absl::Status Matmul(const std::string& name, const Tensor& a, const Tensor& b, const Tensor& c) {
    CudnnDesc& mm = New();
    BATON_RETURN_IF_ERROR(CudnnContext(mm.Create(CUDNN_BACKEND_MATMUL_DESCRIPTOR), name));
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    BATON_CUDNN_IN(cudnnBackendSetAttribute(mm.get(), CUDNN_ATTR_MATMUL_COMP_TYPE,
                                            CUDNN_TYPE_DATA_TYPE, 1, &compute),
                   name);
    BATON_CUDNN_IN(cudnnBackendFinalize(mm.get()), name);
    CudnnDesc& op = New();
    BATON_RETURN_IF_ERROR(CudnnContext(op.Create(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR), name));
    cudnnBackendDescriptor_t mmd = mm.get();
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_MATMUL_ADESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_MATMUL_BDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_MATMUL_CDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_MATMUL_DESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mmd),
                   name);
    BATON_CUDNN_IN(cudnnBackendFinalize(op.get()), name);
    ops_.push_back(op.get());
    return absl::OkStatus();
  }

  // y = reduce(x) over the dims where y has extent 1 (or a divisor: GQA head sums).
  absl::Status Reduction(const std::string& name, cudnnReduceTensorOp_t mode, const Tensor& x,
                         const Tensor& y) {
    CudnnDesc& red = New();
    BATON_RETURN_IF_ERROR(CudnnContext(red.Create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR), name));
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    BATON_CUDNN_IN(cudnnBackendSetAttribute(red.get(), CUDNN_ATTR_REDUCTION_COMP_TYPE,
                                            CUDNN_TYPE_DATA_TYPE, 1, &compute),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(red.get(), CUDNN_ATTR_REDUCTION_OPERATOR,
                                            CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode),
                   name);
    BATON_CUDNN_IN(cudnnBackendFinalize(red.get()), name);
    CudnnDesc& op = New();
    BATON_RETURN_IF_ERROR(
        CudnnContext(op.Create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR), name));
    cudnnBackendDescriptor_t redd = red.get();
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_XDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_YDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_DESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &redd),
                   name);
    BATON_CUDNN_IN(cudnnBackendFinalize(op.get()), name);
    ops_.push_back(op.get());
    return absl::OkStatus();
  }

  // y is x under other dims/strides (a transposed view, and a cast to bf16).
  absl::Status Reshape(const std::string& name, const Tensor& x, const Tensor& y) {
    CudnnDesc& op = New();
    BATON_RETURN_IF_ERROR(
        CudnnContext(op.Create(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR), name));
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_RESHAPE_XDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendSetAttribute(op.get(), CUDNN_ATTR_OPERATION_RESHAPE_YDESC,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.desc),
                   name);
    BATON_CUDNN_IN(cudnnBackendFinalize(op.get()), name);
    ops_.push_back(op.get());
    return absl::OkStatus();
  }

  CudnnDesc& New() {
    descs_.push_back(std::make_unique<CudnnDesc>());
    return *descs_.back();
  }
  const std::vector<cudnnBackendDescriptor_t>& ops() const { return ops_; }

 private:
  std::vector<std::unique_ptr<CudnnDesc>> descs_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_uid_ = 1;
};

// Op graph -> heuristics (mode A) -> the first engine config that finalizes
// (and, when deterministic is asked, is not noted NONDETERMINISTIC) into
// plan_out, with its workspace size and "engine <index> notes [...]". With
// handle null, device_prop (a DEVICEPROP descriptor) stands in for the GPU,
// so heuristics and plan finalize can run without one. On failure the
// status lists every config tried and why it was refused.
absl::Status FinalizeGraph(cudnnHandle_t handle, cudnnBackendDescriptor_t device_prop,
                           bool deterministic, CudnnGraph& graph, CudnnDesc& plan_out,
                           int64_t* workspace_bytes, std::string* engine_info);

}  // namespace baton::cuda

#endif  // BATON_HAVE_CUDNN
