// cuBLASLt GEMM (see gemm.h). Row-major C = op(A)·op(B) is computed as the
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap and keep their flags,
// so no data moves. The bias, a per-column vector of row-major C, is a
// per-row vector of column-major Cᵀ: exactly cuBLASLt's BIAS epilogue.
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"

namespace baton::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// Everything a heuristic answer depends on: types, transposes, sizes,
// strides, bias. A training step repeats a few dozen shapes, so the
// descriptors and the algorithm are made once per shape (the heuristic
// query costs tens of microseconds of host time per call otherwise).
using ShapeKey = std::tuple<int, int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct LtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::mutex mu;
  std::map<ShapeKey, Plan> plans;  // lives until exit, like the handle
};

absl::Status GetContext(LtContext** out) {
  static std::mutex mu;
  static LtContext* contexts[64] = {};
  int device = 0;
  BATON_CHECK_CUDA(cudaGetDevice(&device));
  BATON_CHECK(device >= 0 && device < 64);
  std::lock_guard<std::mutex> lock(mu);
  if (contexts[device] == nullptr) {
    auto ctx = std::make_unique<LtContext>();
    BATON_CHECK_CUBLAS(cublasLtCreate(&ctx->handle));
    BATON_CHECK_CUDA(cudaMalloc(&ctx->workspace, kWorkspaceBytes));
    contexts[device] = ctx.release();  // lives until exit, like the CUDA context
  }
  *out = contexts[device];
  return absl::OkStatus();
}

cudaDataType_t CudaType(Float t) { return t == Float::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

// RAII owners for the descriptors of one call.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~MatmulDesc() { if (d) cublasLtMatmulDescDestroy(d); }
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  ~Layout() { if (l) cublasLtMatrixLayoutDestroy(l); }
};
struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  ~Preference() { if (p) cublasLtMatmulPreferenceDestroy(p); }
};
// What every algorithm query here asks for: at most our workspace.
absl::Status MakePreference(Preference* pref) {
  BATON_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref->p));
  const uint64_t ws = kWorkspaceBytes;
  BATON_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
      pref->p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  return absl::OkStatus();
}

}  // namespace

// Descriptors and the heuristic's first algorithm for g's shape. The
// algorithm does not depend on alpha, beta or the pointers (cuBLASLt
// assumes 256-byte aligned operands by default, as every call here did).
absl::Status MakePlan(const GemmArgs& g, cublasLtHandle_t handle, Plan* plan) {
  // Column-major view: C' (n × m) = op(B') (n × k) · op(A') (k × m).
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  MatmulDesc desc;
  BATON_CHECK_CUBLAS(cublasLtMatmulDescCreate(&desc.d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BATON_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_b,
                                                    sizeof(op_b)));
  BATON_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_a,
                                                    sizeof(op_a)));
  if (g.bias != nullptr) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    BATON_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                      sizeof(epi)));
    const void* bias = g.bias;
    BATON_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
        desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    const cudaDataType_t bias_type = CudaType(g.t_c);
    BATON_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
        desc.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  // Stored column-major shapes: B' is (rows = b's row length, cols = b's rows).
  const uint64_t b_rows = g.trans_b ? g.k : g.n, b_cols = g.trans_b ? g.n : g.k;
  const uint64_t a_rows = g.trans_a ? g.m : g.k, a_cols = g.trans_a ? g.k : g.m;
  Layout lb, la, lc;
  BATON_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&lb.l, CudaType(g.t_ab), b_rows, b_cols, g.ldb));
  BATON_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&la.l, CudaType(g.t_ab), a_rows, a_cols, g.lda));
  BATON_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&lc.l, CudaType(g.t_c), g.n, g.m, g.ldc));

  Preference pref;
  BATON_RETURN_IF_ERROR(MakePreference(&pref));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  BATON_CHECK_CUBLAS(cublasLtMatmulAlgoGetHeuristic(handle, desc.d, lb.l, la.l, lc.l, lc.l,
                                                    pref.p, 1, &heuristic, &found));
  if (found == 0)
    return absl::InvalidArgumentError("cuBLASLt found no algorithm for this GEMM");
  plan->algo = heuristic.algo;
  plan->desc = std::exchange(desc.d, nullptr);  // owned by the plan from here on
  plan->la = std::exchange(la.l, nullptr);
  plan->lb = std::exchange(lb.l, nullptr);
  plan->lc = std::exchange(lc.l, nullptr);
  return absl::OkStatus();
}

namespace {
std::atomic<bool> g_autotune{false};

// Times up to kCandidates algorithms of the heuristic's ranking on g's own
// operands (into a scratch C with beta 0, so g.c is untouched) and keeps
// the fastest: min of kReps runs each, CUDA events on `stream`.
absl::Status Autotune(const GemmArgs& g, cublasLtHandle_t handle, void* workspace, Plan* plan,
                      cudaStream_t stream) {
  constexpr int kCandidates = 8, kReps = 3;
  Preference pref;
  BATON_RETURN_IF_ERROR(MakePreference(&pref));
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  BATON_CHECK_CUBLAS(cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->lb, plan->la, plan->lc, plan->lc,
                                                    pref.p, kCandidates, results, &found));
  if (found <= 1) return absl::OkStatus();
  const size_t c_bytes = static_cast<size_t>(g.m) * g.ldc * (g.t_c == Float::kF32 ? 4 : 2);
  void* scratch = nullptr;
  BATON_CHECK_CUDA(cudaMallocAsync(&scratch, c_bytes, stream));
  cudaEvent_t start = nullptr, stop = nullptr;
  BATON_CHECK_CUDA(cudaEventCreate(&start));
  BATON_CHECK_CUDA(cudaEventCreate(&stop));
  const float zero = 0.f;
  float best_ms = 0.f;
  int best = -1;
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    float ms_min = 0.f;
    bool ok = true;
    for (int r = 0; r < kReps && ok; ++r) {
      BATON_CHECK_CUDA(cudaEventRecord(start, stream));
      ok = cublasLtMatmul(handle, plan->desc, &g.alpha, g.b, plan->lb, g.a, plan->la, &zero, scratch, plan->lc,
                          scratch, plan->lc, &results[i].algo, workspace, kWorkspaceBytes,
                          stream) == CUBLAS_STATUS_SUCCESS;
      BATON_CHECK_CUDA(cudaEventRecord(stop, stream));
      BATON_CHECK_CUDA(cudaEventSynchronize(stop));
      float ms = 0.f;
      BATON_CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
      if (r == 0 || ms < ms_min) ms_min = ms;
    }
    if (ok && (best < 0 || ms_min < best_ms)) best = i, best_ms = ms_min;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  BATON_CHECK_CUDA(cudaFreeAsync(scratch, stream));
  if (best >= 0) plan->algo = results[best].algo;
  return absl::OkStatus();
}
}  // namespace

void SetGemmAutotune(bool on) { g_autotune.store(on); }

absl::Status Gemm(const GemmArgs& g, cudaStream_t stream) {
  BATON_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0);
  BATON_CHECK(g.t_c == Float::kF32 || g.t_c == g.t_ab);
  if (g.m == 0 || g.n == 0) return absl::OkStatus();
  if (g.k == 0) {  // c = beta·c (+ bias): cuBLASLt rejects empty layouts
    BATON_CHECK(g.ldc == g.n && g.bias == nullptr);
    return Scale(g.t_c, g.c, g.m * g.n, g.beta, stream);
  }
  LtContext* ctx = nullptr;
  BATON_RETURN_IF_ERROR(GetContext(&ctx));
  std::lock_guard<std::mutex> lock(ctx->mu);

  const ShapeKey key{static_cast<int>(g.t_ab), static_cast<int>(g.t_c), g.trans_a, g.trans_b, g.m, g.n, g.k,
                     g.lda, g.ldb, g.ldc, g.bias != nullptr};
  auto it = ctx->plans.find(key);
  if (it == ctx->plans.end()) {
    Plan plan;
    BATON_RETURN_IF_ERROR(MakePlan(g, ctx->handle, &plan));
    if (g_autotune.load()) BATON_RETURN_IF_ERROR(Autotune(g, ctx->handle, ctx->workspace, &plan, stream));
    it = ctx->plans.emplace(key, plan).first;
  }
  Plan& plan = it->second;
  if (g.bias != nullptr) {  // the one per-call attribute
    const void* bias = g.bias;
    BATON_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                      sizeof(bias)));
  }
  BATON_CHECK_CUBLAS(cublasLtMatmul(ctx->handle, plan.desc, &g.alpha, g.b, plan.lb, g.a, plan.la, &g.beta,
                                    g.c, plan.lc, g.c, plan.lc, &plan.algo, ctx->workspace,
                                    kWorkspaceBytes, stream));
  return absl::OkStatus();
}

}  // namespace baton::cuda
