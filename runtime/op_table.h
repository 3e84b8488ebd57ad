// The op table: one struct of kernel entry points per device, so that an op
// (runtime/ops.h) checks its arguments once and then dispatches in one
// place, whatever the backend. BATON_OP_LIST names every op once; the ids,
// the names and the coverage checks of the tests are generated from it, so
// a new op cannot be added to the table without appearing in the parity
// test (tests/kernels/op_parity_gpu_test.cc). A null entry marks an op the
// device has no kernel for (CPU-only): calling it there is Unimplemented,
// naming the op and the device. The CPU table (ops_cpu.cc) is complete; the
// CUDA table (ops_cuda.cc) exists where BATON_HAVE_CUDA is defined and is
// empty otherwise. Tables are constant data: a dispatch is one indirect
// call, with no allocation and no device sync.
#pragma once

#include <array>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/ops.h"

namespace baton::ops {

#define BATON_OP_LIST(X)                                                                         \
  X(MatMul) X(Linear) X(LinearBackward) X(RmsNorm) X(AddRmsNorm) X(RmsNormBackward) X(Rope)     \
  X(RopeBackward) X(Attention) X(AttentionBackward) X(SwiGlu) X(SwiGluBackward) X(Embedding)    \
  X(EmbeddingBackward) X(SoftmaxCrossEntropy) X(RowMax) X(RowSumExp) X(PickTargets)             \
  X(VocabParallelCrossEntropy) X(Add) X(AddInPlace) X(Scale) X(SumSquares) X(Sum) X(Convert)    \
  X(AdamW)

enum class OpId : int {
#define BATON_OP_ID_(name) k##name,
  BATON_OP_LIST(BATON_OP_ID_)
#undef BATON_OP_ID_
};

#define BATON_OP_ONE_(name) +1
inline constexpr int kNumOps = 0 BATON_OP_LIST(BATON_OP_ONE_);
#undef BATON_OP_ONE_

inline constexpr std::array<const char*, kNumOps> kOpNames = {
#define BATON_OP_NAME_(name) #name,
    BATON_OP_LIST(BATON_OP_NAME_)
#undef BATON_OP_NAME_
};
inline constexpr const char* OpName(OpId id) { return kOpNames[static_cast<int>(id)]; }

// The dtype rules of a backend, which the entry checks apply (op_checks.h).
struct BackendRules {
  DType second_float = DType::kF64;  // the element dtype besides f32: f64 (CPU) or bf16 (CUDA)
  bool f32_statistics = false;       // rstd, lse, row statistics and losses are f32 (else: like x)
  bool f32_gradients = false;        // parameter grads may be f32 under lower-precision activations
  bool stores_probs = true;          // Attention can store the probabilities
};

// Entry points of one device. Each is called only after the op's checks
// passed, with the op's own arguments; Rope's two directions are two entries.
struct OpKernels {
  BackendRules rules;
  absl::Status (*MatMul)(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                         float alpha, float beta) = nullptr;
  absl::Status (*Linear)(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) = nullptr;
  absl::Status (*LinearBackward)(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx,
                                 Tensor* dw, Tensor* db, bool accumulate_dx) = nullptr;
  absl::Status (*RmsNorm)(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                          Tensor& rstd) = nullptr;
  absl::Status (*AddRmsNorm)(const Tensor& a, const Tensor& b, const Tensor& w, float eps,
                             Tensor& sum, Tensor& y, Tensor& rstd) = nullptr;
  absl::Status (*RmsNormBackward)(const Tensor& dy, const Tensor& x, const Tensor& w,
                                  const Tensor& rstd, Tensor& dx, Tensor& dw,
                                  const Tensor* dres) = nullptr;
  absl::Status (*Rope)(Tensor& x, const RopeParams& p) = nullptr;
  absl::Status (*RopeBackward)(Tensor& dx, const RopeParams& p) = nullptr;
  absl::Status (*Attention)(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                            Tensor& lse, Tensor* probs) = nullptr;
  absl::Status (*AttentionBackward)(const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    const Tensor* probs, Tensor& dq, Tensor& dk,
                                    Tensor& dv) = nullptr;
  absl::Status (*SwiGlu)(const Tensor& gate, const Tensor& up, Tensor& h) = nullptr;
  absl::Status (*SwiGluBackward)(const Tensor& dh, const Tensor& gate, const Tensor& up,
                                 Tensor& dgate, Tensor& dup) = nullptr;
  absl::Status (*Embedding)(const Tensor& tokens, const Tensor& table, int64_t vocab_start,
                            Tensor& out) = nullptr;
  absl::Status (*EmbeddingBackward)(const Tensor& dout, const Tensor& tokens, int64_t vocab_start,
                                    Tensor& dtable) = nullptr;
  absl::Status (*SoftmaxCrossEntropy)(const Tensor& logits, const Tensor& targets, Tensor& losses,
                                      Tensor* dlogits, float grad_scale) = nullptr;
  absl::Status (*RowMax)(const Tensor& logits, Tensor& max) = nullptr;
  absl::Status (*RowSumExp)(const Tensor& logits, const Tensor& max, Tensor& sum) = nullptr;
  absl::Status (*PickTargets)(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                              Tensor& target_logit) = nullptr;
  absl::Status (*VocabParallelCrossEntropy)(const Tensor& logits, const Tensor& targets,
                                            int64_t vocab_start, const Tensor& max,
                                            const Tensor& sum, const Tensor& target_logit,
                                            Tensor& losses, Tensor* dlogits,
                                            float grad_scale) = nullptr;
  absl::Status (*Add)(const Tensor& a, const Tensor& b, Tensor& out) = nullptr;
  absl::Status (*AddInPlace)(Tensor& y, const Tensor& x) = nullptr;
  absl::Status (*Scale)(Tensor& x, float s) = nullptr;
  absl::StatusOr<double> (*SumSquares)(const Tensor& x) = nullptr;
  absl::StatusOr<double> (*Sum)(const Tensor& x) = nullptr;
  absl::Status (*Convert)(const Tensor& x, Tensor& out) = nullptr;
  absl::Status (*AdamW)(std::span<const AdamWTensors> list, const AdamWParams& hp) = nullptr;
};

extern const OpKernels kCpuKernels;   // ops_cpu.cc: every op
extern const OpKernels kCudaKernels;  // ops_cuda.cc; all null without BATON_HAVE_CUDA

inline const OpKernels& KernelsFor(Device d) {
  return d == Device::kCuda ? kCudaKernels : kCpuKernels;
}

// Whether `d` has a kernel for `id` (false: the op is not available there).
bool HasKernel(Device d, OpId id);

namespace internal {

// "SwiGlu: no kernel on cuda (the op is CPU-only)".
absl::Status NoKernel(OpId id, Device d);
// A kernel's error with the op in front ("Linear: gemm.cc:120: cublasLtMatmul(...): ...").
absl::Status InOp(OpId id, const absl::Status& s);

// The one dispatch: the device's entry, or Unimplemented where it has none.
template <typename Fn, typename... Args>
auto Invoke(OpId id, Device d, Fn fn, Args&&... args) -> decltype(fn(std::forward<Args>(args)...)) {
  if (fn == nullptr) return NoKernel(id, d);
  auto result = fn(std::forward<Args>(args)...);
  if (!result.ok()) [[unlikely]] {
    if constexpr (std::is_same_v<decltype(result), absl::Status>) {
      return InOp(id, result);
    } else {
      return InOp(id, result.status());
    }
  }
  return result;
}

}  // namespace internal

// Runs op `name` on device `dev`'s table with the given arguments.
#define BATON_OP_DISPATCH(name, dev, ...)                                    \
  ::baton::ops::internal::Invoke(::baton::ops::OpId::k##name, (dev),         \
                                 ::baton::ops::KernelsFor(dev).name, __VA_ARGS__)

}  // namespace baton::ops
