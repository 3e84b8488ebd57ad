// cuDNN fused flash attention (see cudnn_attention.h): the forward and
// backward SDPA graphs composed from backend ops the way cudnn-frontend's
// CompositeSDPANode / CompositeSDPABackwardNode expand them for cuDNN 9.19
// (matmul, scale, causal mask as GEN_INDEX + CMP_GE + BINARY_SELECT,
// softmax with stats, matmul), handed to heuristics mode A, and the first
// engine config that finalizes is kept as this shape's plan. cuDNN matches
// these graphs against its fused attention engines, so node order, data
// types and virtual-tensor strides follow the frontend's exactly; a graph it
// does not recognise finalizes nowhere and the caller falls back to FA2.
// Tensors are 4-D (b, heads, seq, d) views of our (b, t, heads, d) buffers
// through strides; K and V enter the score matmuls transposed (b, kv, d, t).
#include "kernels/cuda/cudnn_attention.h"

#ifdef BATON_HAVE_CUDNN

#include <cudnn.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cudnn_check.h"
#include "kernels/cuda/cudnn_graph.h"

namespace baton::cuda {
namespace {

// One shape's executable plan. Scalars passed by value live here: cuDNN
// reads them through host pointers at execute time.
struct Plan {
  CudnnGraph graph;
  CudnnDesc plan;
  int64_t plan_workspace = 0;     // bytes, cuDNN's own
  int64_t softmax_sum_bytes = 0;  // backward: Σ dO·O per row (b, h, t) f32, after cuDNN's part
  std::vector<int64_t> uids;      // in the order of the pointers Execute() gets
  float scale = 1.f, neg_inf = -std::numeric_limits<float>::infinity(), one = 1.f;
  std::string info;
};

int64_t AlignUp(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

// Strides of a (b, t, heads, d) buffer seen as (b, heads, t, d).
CudnnDims Bthd(const AttentionDims& s, int64_t heads) {
  return {s.t * heads * s.d, s.d, heads * s.d, 1};
}
// The same buffer seen as (b, heads, d, t): the transposed operand.
CudnnDims BthdT(const AttentionDims& s, int64_t heads) {
  return {s.t * heads * s.d, s.d, 1, heads * s.d};
}

// The plan for p's graph; info gets the engine and the total workspace.
absl::Status FinalizePlan(cudnnHandle_t handle, bool deterministic, Plan& p,
                          cudnnBackendDescriptor_t device_prop = nullptr) {
  std::string engine;
  BATON_RETURN_IF_ERROR(FinalizeGraph(handle, device_prop, deterministic, p.graph, p.plan,
                                      &p.plan_workspace, &engine));
  absl::StrAppend(&p.info, engine, ", workspace ", p.plan_workspace + p.softmax_sum_bytes, " B");
  return absl::OkStatus();
}

#define BATON_T(var, expr) BATON_ASSIGN_OR_RETURN(const CudnnGraph::Tensor var, (expr))

// Forward: S = Q·Kᵀ·scale, causal mask, softmax with stats = max + log Σ exp
// (the lse), O = P·V; uids in Execute order q, k, v, out, lse, scale, -inf.
absl::Status BuildForwardOps(const AttentionDims& s, Plan& p) {
  CudnnGraph& g = p.graph;
  const int64_t b = s.b, t = s.t, h = s.h, kv = s.kv, d = s.d;
  const CudnnDims score_dims{b, h, t, t}, score_strides{h * t * t, t * t, t, 1};
  const CudnnDims row_dims{b, h, t, 1}, row_strides{h * t, t, 1, 1};
  BATON_T(q, g.AddTensor("Q", CUDNN_DATA_BFLOAT16, {b, h, t, d}, Bthd(s, h), false));
  BATON_T(kt, g.AddTensor("K^T", CUDNN_DATA_BFLOAT16, {b, kv, d, t}, BthdT(s, kv), false));
  BATON_T(v, g.AddTensor("V", CUDNN_DATA_BFLOAT16, {b, kv, t, d}, Bthd(s, kv), false));
  BATON_T(o, g.AddTensor("O", CUDNN_DATA_BFLOAT16, {b, h, t, d}, Bthd(s, h), false));
  BATON_T(stats, g.AddTensor("Stats", CUDNN_DATA_FLOAT, row_dims, row_strides, false));
  BATON_T(scale, g.Scalar("attn_scale"));
  BATON_T(neg_inf, g.Scalar("-inf"));
  p.uids = {q.uid, kt.uid, v.uid, o.uid, stats.uid, scale.uid, neg_inf.uid};

  BATON_T(s0, g.Virtual("bmm1", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Matmul("bmm1", q, kt, s0));
  BATON_T(s1, g.Virtual("attn_scale", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("attn_scale", CUDNN_POINTWISE_MUL, s0, &scale, s1));
  // Causal (top-left diagonal): keep row >= col, else -inf.
  BATON_T(row, g.Virtual("gen_row_index", score_dims, score_strides, CUDNN_DATA_INT32));
  BATON_RETURN_IF_ERROR(g.Pointwise("gen_row_index", CUDNN_POINTWISE_GEN_INDEX, s1, nullptr, row,
                                    CUDNN_DATA_FLOAT, /*axis=*/2));
  BATON_T(col, g.Virtual("gen_col_index", score_dims, score_strides, CUDNN_DATA_INT32));
  BATON_RETURN_IF_ERROR(g.Pointwise("gen_col_index", CUDNN_POINTWISE_GEN_INDEX, s1, nullptr, col,
                                    CUDNN_DATA_FLOAT, /*axis=*/3));
  BATON_T(keep, g.Virtual("row>=col", score_dims, score_strides, CUDNN_DATA_BOOLEAN));
  BATON_RETURN_IF_ERROR(
      g.Pointwise("row>=col", CUDNN_POINTWISE_CMP_GE, row, &col, keep, CUDNN_DATA_BOOLEAN));
  BATON_T(s2, g.Virtual("binary_select", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("binary_select", CUDNN_POINTWISE_BINARY_SELECT, s1, &neg_inf,
                                    s2, CUDNN_DATA_FLOAT, -1, &keep));
  // Softmax with stats, as the frontend's CompositeSoftmaxNode expands it.
  BATON_T(mx, g.Virtual("max", row_dims, row_strides));
  BATON_RETURN_IF_ERROR(g.Reduction("max", CUDNN_REDUCE_TENSOR_MAX, s2, mx));
  BATON_T(sub, g.Virtual("sub_M", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("sub_M", CUDNN_POINTWISE_SUB, s2, &mx, sub));
  BATON_T(ex, g.Virtual("exp_sub_M", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("exp_sub_M", CUDNN_POINTWISE_EXP, sub, nullptr, ex));
  BATON_T(sum, g.Virtual("SumExp", row_dims, row_strides));
  BATON_RETURN_IF_ERROR(g.Reduction("SumExp", CUDNN_REDUCE_TENSOR_ADD, ex, sum));
  BATON_T(lg, g.Virtual("log", row_dims, row_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("log", CUDNN_POINTWISE_LOG, sum, nullptr, lg));
  BATON_RETURN_IF_ERROR(g.Pointwise("stats", CUDNN_POINTWISE_ADD, mx, &lg, stats));
  BATON_T(prob, g.Virtual("P", score_dims, score_strides, CUDNN_DATA_BFLOAT16));
  BATON_RETURN_IF_ERROR(g.Pointwise("div", CUDNN_POINTWISE_DIV, ex, &sum, prob));
  BATON_RETURN_IF_ERROR(g.Matmul("bmm2", prob, v, o));
  return absl::OkStatus();
}

// Backward (CompositeSDPABackwardNode with use_dp_workspace, the frontend's
// deterministic choice on Hopper: dQ = dS·K straight into dq, no f32 atomic
// accumulator). softmax_sum = Σ_d dO·O (b, h, t) lives in our workspace.
// uids in Execute order q, k, v, out, dout, lse, dq, dk, dv, softmax_sum,
// scale, -inf, one.
absl::Status BuildBackwardOps(const AttentionDims& s, Plan& p) {
  CudnnGraph& g = p.graph;
  const int64_t b = s.b, t = s.t, h = s.h, kv = s.kv, d = s.d;
  const CudnnDims score_dims{b, h, t, t}, score_strides{h * t * t, t * t, t, 1};
  const CudnnDims scoreT_strides{h * t * t, t * t, 1, t};  // (b, h, key, query) view
  const CudnnDims row_dims{b, h, t, 1}, row_strides{h * t, t, 1, 1};
  BATON_T(q, g.AddTensor("Q", CUDNN_DATA_BFLOAT16, {b, h, t, d}, Bthd(s, h), false));
  BATON_T(kt, g.AddTensor("K^T", CUDNN_DATA_BFLOAT16, {b, kv, d, t}, BthdT(s, kv), false));
  BATON_T(vt, g.AddTensor("V^T", CUDNN_DATA_BFLOAT16, {b, kv, d, t}, BthdT(s, kv), false));
  BATON_T(o, g.AddTensor("O", CUDNN_DATA_BFLOAT16, {b, h, t, d}, Bthd(s, h), false));
  BATON_T(d_o, g.AddTensor("dO", CUDNN_DATA_BFLOAT16, {b, h, t, d}, Bthd(s, h), false));
  BATON_T(stats, g.AddTensor("Stats", CUDNN_DATA_FLOAT, row_dims, row_strides, false));
  BATON_T(dq, g.AddTensor("dQ", CUDNN_DATA_BFLOAT16, {b, h, t, d}, Bthd(s, h), false));
  BATON_T(dk, g.AddTensor("dK", CUDNN_DATA_BFLOAT16, {b, kv, t, d}, Bthd(s, kv), false));
  BATON_T(dv, g.AddTensor("dV", CUDNN_DATA_BFLOAT16, {b, kv, t, d}, Bthd(s, kv), false));
  BATON_T(softmax_sum, g.AddTensor("softmax_sum", CUDNN_DATA_FLOAT, row_dims, row_strides, false));
  BATON_T(scale, g.Scalar("attn_scale"));
  BATON_T(neg_inf, g.Scalar("-inf"));
  BATON_T(one, g.Scalar("one"));
  p.uids = {q.uid,  kt.uid, vt.uid,          o.uid,     d_o.uid,     stats.uid, dq.uid,
            dk.uid, dv.uid, softmax_sum.uid, scale.uid, neg_inf.uid, one.uid};
  p.softmax_sum_bytes = int64_t{4} * b * h * t;

  // softmax_sum = Σ_d dO·O (the frontend's strides for this virtual, kept verbatim).
  BATON_T(doo, g.Virtual("mul_dO_O", {b, h, t, d}, {h * t * d, t * d, h * d, 1}));
  BATON_RETURN_IF_ERROR(g.Pointwise("mul_dO_O", CUDNN_POINTWISE_MUL, d_o, &o, doo));
  BATON_T(rsum, g.Virtual("reduce_dO_o", row_dims, row_strides));
  BATON_RETURN_IF_ERROR(g.Reduction("reduce_dO_o", CUDNN_REDUCE_TENSOR_ADD, doo, rsum));
  BATON_RETURN_IF_ERROR(
      g.Pointwise("scale_dropout_inv", CUDNN_POINTWISE_MUL, rsum, &one, softmax_sum));
  // P = exp(Q·Kᵀ·scale − lse), masked.
  BATON_T(s0, g.Virtual("matmul_Q_KT", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Matmul("matmul_Q_KT", q, kt, s0));
  BATON_T(s1, g.Virtual("mul_s_attn_scale", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("mul_s_attn_scale", CUDNN_POINTWISE_MUL, s0, &scale, s1));
  BATON_T(s2, g.Virtual("sub_s_m", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("sub_s_m", CUDNN_POINTWISE_SUB, s1, &stats, s2));
  BATON_T(row, g.Virtual("gen_row_index", score_dims, score_strides, CUDNN_DATA_INT32));
  BATON_RETURN_IF_ERROR(g.Pointwise("gen_row_index", CUDNN_POINTWISE_GEN_INDEX, s2, nullptr, row,
                                    CUDNN_DATA_FLOAT, /*axis=*/2));
  BATON_T(col, g.Virtual("gen_col_index", score_dims, score_strides, CUDNN_DATA_INT32));
  BATON_RETURN_IF_ERROR(g.Pointwise("gen_col_index", CUDNN_POINTWISE_GEN_INDEX, s2, nullptr, col,
                                    CUDNN_DATA_FLOAT, /*axis=*/3));
  BATON_T(keep, g.Virtual("row>=col", score_dims, score_strides, CUDNN_DATA_BOOLEAN));
  BATON_RETURN_IF_ERROR(
      g.Pointwise("row>=col", CUDNN_POINTWISE_CMP_GE, row, &col, keep, CUDNN_DATA_BOOLEAN));
  BATON_T(s3, g.Virtual("binary_select", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("binary_select", CUDNN_POINTWISE_BINARY_SELECT, s2, &neg_inf,
                                    s3, CUDNN_DATA_FLOAT, -1, &keep));
  BATON_T(pexp, g.Virtual("exp_s", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("exp_s", CUDNN_POINTWISE_EXP, s3, nullptr, pexp));
  // dV = Pᵀ·dO (GQA: per query head, then summed over the group).
  BATON_T(pt, g.Virtual("reshape_p", score_dims, scoreT_strides, CUDNN_DATA_BFLOAT16));
  BATON_RETURN_IF_ERROR(g.Reshape("reshape_p", pexp, pt));
  const CudnnDims full_dims{b, h, t, d}, full_strides{h * t * d, t * d, d, 1};
  if (h == kv) {
    BATON_RETURN_IF_ERROR(g.Matmul("matmul_pT_dO", pt, d_o, dv));
  } else {
    BATON_T(dv_full, g.Virtual("dV_fullhead", full_dims, full_strides, CUDNN_DATA_BFLOAT16));
    BATON_RETURN_IF_ERROR(g.Matmul("matmul_pT_dO", pt, d_o, dv_full));
    BATON_RETURN_IF_ERROR(g.Reduction("red_dV_head", CUDNN_REDUCE_TENSOR_ADD, dv_full, dv));
  }
  // dS = P ∘ (dO·Vᵀ − softmax_sum) · scale
  BATON_T(dp, g.Virtual("matmul_dO_VT", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Matmul("matmul_dO_VT", d_o, vt, dp));
  BATON_T(dp1, g.Virtual("sub_dP_softmax_sum", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(
      g.Pointwise("sub_dP_softmax_sum", CUDNN_POINTWISE_SUB, dp, &softmax_sum, dp1));
  BATON_T(dp2, g.Virtual("mul_dP_exp_s", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("mul_dP_exp_s", CUDNN_POINTWISE_MUL, dp1, &pexp, dp2));
  BATON_T(ds, g.Virtual("mul_dS_attn_scale", score_dims, score_strides));
  BATON_RETURN_IF_ERROR(g.Pointwise("mul_dS_attn_scale", CUDNN_POINTWISE_MUL, dp2, &scale, ds));
  // dK = dSᵀ·Q (GQA: summed over the group).
  BATON_T(dst, g.Virtual("reshape_dS", score_dims, scoreT_strides, CUDNN_DATA_BFLOAT16));
  BATON_RETURN_IF_ERROR(g.Reshape("reshape_dS", ds, dst));
  if (h == kv) {
    BATON_RETURN_IF_ERROR(g.Matmul("matmul_dST_Q", dst, q, dk));
  } else {
    BATON_T(dk_full, g.Virtual("dK_fullhead", full_dims, full_strides, CUDNN_DATA_BFLOAT16));
    BATON_RETURN_IF_ERROR(g.Matmul("matmul_dST_Q", dst, q, dk_full));
    BATON_RETURN_IF_ERROR(g.Reduction("red_dK_head", CUDNN_REDUCE_TENSOR_ADD, dk_full, dk));
  }
  // dQ = dS·K, K as the un-transposed view of Kᵀ.
  BATON_T(k, g.Virtual("reshape_k", {b, kv, t, d}, Bthd(s, kv), CUDNN_DATA_BFLOAT16));
  BATON_RETURN_IF_ERROR(g.Reshape("reshape_k", kt, k));
  BATON_RETURN_IF_ERROR(g.Matmul("matmul_dS_K", ds, k, dq));
  return absl::OkStatus();
}

// The ops, then the plan; only the backward must be deterministic.
std::atomic<bool> g_require_deterministic{true};

absl::Status Build(cudnnHandle_t handle, const AttentionDims& s, bool backward, Plan& p) {
  BATON_RETURN_IF_ERROR(backward ? BuildBackwardOps(s, p) : BuildForwardOps(s, p));
  return FinalizePlan(handle, /*deterministic=*/backward && g_require_deterministic.load(), p);
}

// ---- the process's cache of handles and plans

struct HandleOwner {
  cudnnHandle_t h = nullptr;
  ~HandleOwner() {
    if (h != nullptr) cudnnDestroy(h);
  }
};

// (device, b, t, h, kv, d, backward, deterministic engines only)
using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool>;
struct Entry {
  absl::Status status;  // a failed build is remembered: no rebuild per step
  std::unique_ptr<Plan> plan;
};
struct Cache {
  std::map<int, std::unique_ptr<HandleOwner>> handles;  // by device
  std::map<Key, Entry> plans;
};
// One cache for the process, so that plans built ahead of the first step
// on another thread (CudnnAttentionPrepare) serve the training thread. A
// cuDNN handle may move between threads but not be used by two at once:
// every use of the cache, its handles and plans holds g_cache_mu.
// Leaked on purpose: destroying cuDNN handles from static destructors can
// run after the CUDA runtime has torn down.
std::mutex g_cache_mu;
Cache& ProcessCache() {
  static Cache* cache = new Cache();
  return *cache;
}

absl::StatusOr<cudnnHandle_t> Handle(int device) {
  auto& slot = ProcessCache().handles[device];
  if (slot == nullptr) {
    if (cudnnGetVersion() < 90000)
      return absl::UnimplementedError(
          absl::StrCat("cuDNN ", cudnnGetVersion(), " < 9.0: the fused attention graph needs 9"));
    auto owner = std::make_unique<HandleOwner>();
    BATON_CHECK_CUDNN(cudnnCreate(&owner->h));
    slot = std::move(owner);
  }
  return slot->h;
}

absl::StatusOr<Plan*> GetPlan(const AttentionDims& s, bool backward, cudnnHandle_t* handle_out) {
  int device = 0;
  BATON_CHECK_CUDA(cudaGetDevice(&device));
  BATON_ASSIGN_OR_RETURN(cudnnHandle_t handle, Handle(device));
  *handle_out = handle;
  const Key key{device, s.b, s.t, s.h, s.kv, s.d, backward, g_require_deterministic.load()};
  auto& plans = ProcessCache().plans;
  auto it = plans.find(key);
  if (it == plans.end()) {
    Entry e;
    e.plan = std::make_unique<Plan>();
    e.plan->scale = 1.0f / std::sqrt(static_cast<float>(s.d));
    const auto t0 = std::chrono::steady_clock::now();
    e.status = Build(handle, s, backward, *e.plan);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const std::string what =
        absl::StrCat("cuDNN attention ", backward ? "bwd" : "fwd", " (b ", s.b, ", t ", s.t, ", h ",
                     s.h, ", kv ", s.kv, ", d ", s.d, ")");
    if (e.status.ok()) {
      absl::StrAppend(&e.plan->info, ", built in ", static_cast<int64_t>(ms), " ms");
    } else {
      e.status = absl::Status(e.status.code(), absl::StrCat(what, ": ", e.status.message()));
      // Anything that went wrong while building means "this shape has no plan".
      if (e.status.code() != absl::StatusCode::kResourceExhausted)
        e.status = absl::UnimplementedError(e.status.message());
      e.plan.reset();
    }
    it = plans.emplace(key, std::move(e)).first;
  }
  if (!it->second.status.ok()) return it->second.status;
  return it->second.plan.get();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

absl::Status Execute(const Plan& p, cudnnHandle_t handle, cudaStream_t stream,
                     std::vector<void*> ptrs) {
  BATON_CHECK(ptrs.size() + 4 >= p.uids.size());  // + softmax_sum, scale, -inf[, one]
  const int64_t plan_bytes = AlignUp(p.plan_workspace, 256);
  const int64_t bytes = plan_bytes + p.softmax_sum_bytes;
  char* ws = nullptr;
  if (bytes > 0) BATON_CHECK_CUDA(cudaMallocAsync(reinterpret_cast<void**>(&ws), bytes, stream));
  if (p.softmax_sum_bytes > 0) ptrs.push_back(ws + plan_bytes);
  // by-value scalars, in the uid order of the builders (scale, -inf[, one])
  ptrs.push_back(const_cast<float*>(&p.scale));
  ptrs.push_back(const_cast<float*>(&p.neg_inf));
  if (ptrs.size() < p.uids.size()) ptrs.push_back(const_cast<float*>(&p.one));
  BATON_CHECK(ptrs.size() == p.uids.size());
  absl::Status st = [&]() -> absl::Status {
    BATON_CHECK_CUDNN(cudnnSetStream(handle, stream));
    CudnnDesc pack;
    BATON_RETURN_IF_ERROR(pack.Create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR));
    BATON_CHECK_CUDNN(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                               CUDNN_TYPE_INT64,
                                               static_cast<int64_t>(p.uids.size()), p.uids.data()));
    BATON_CHECK_CUDNN(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                               CUDNN_TYPE_VOID_PTR,
                                               static_cast<int64_t>(ptrs.size()), ptrs.data()));
    void* wsp = ws;
    BATON_CHECK_CUDNN(cudnnBackendSetAttribute(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                               CUDNN_TYPE_VOID_PTR, 1, &wsp));
    BATON_CHECK_CUDNN(cudnnBackendFinalize(pack.get()));
    BATON_CHECK_CUDNN(cudnnBackendExecute(handle, p.plan.get(), pack.get()));
    return absl::OkStatus();
  }();
  if (ws != nullptr) {
    const absl::Status f =
        FromCuda(cudaFreeAsync(ws, stream), "cudaFreeAsync(ws)", __FILE__, __LINE__);
    if (st.ok()) st = f;
  }
  return st;
}

absl::Status CheckArgs(const AttentionDims& s, std::initializer_list<const void*> ptrs) {
  if (s.b <= 0 || s.t <= 0 || s.h <= 0 || s.kv <= 0 || s.h % s.kv != 0 || s.d % 8 != 0 || s.d > 256)
    return absl::UnimplementedError(absl::StrCat("cuDNN attention: unsupported dims b ", s.b, " t ",
                                                 s.t, " h ", s.h, " kv ", s.kv, " d ", s.d));
  for (const void* p : ptrs)
    if (!Aligned16(p))
      return absl::UnimplementedError("cuDNN attention: pointer not 16-byte aligned");
  return absl::OkStatus();
}

}  // namespace

bool CudnnAttentionBuilt() { return true; }

void SetCudnnAttentionRequireDeterministic(bool require) { g_require_deterministic.store(require); }

std::string CudnnAttentionVersion() {
  return absl::StrCat("cuDNN ", cudnnGetVersion(), " (built against ", CUDNN_VERSION, ")");
}

absl::Status CudnnAttentionForward(const void* q, const void* k, const void* v,
                                   const AttentionDims& dims, void* out, float* lse,
                                   cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckArgs(dims, {q, k, v, out, lse}));
  std::lock_guard<std::mutex> lock(g_cache_mu);
  cudnnHandle_t handle = nullptr;
  BATON_ASSIGN_OR_RETURN(Plan * p, GetPlan(dims, /*backward=*/false, &handle));
  return CudnnContext(
      Execute(*p, handle, stream,
              {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), out, lse}),
      "cuDNN attention fwd");
}

absl::Status CudnnAttentionBackward(const void* dout, const void* q, const void* k, const void* v,
                                    const void* out, const float* lse, const AttentionDims& dims,
                                    void* dq, void* dk, void* dv, cudaStream_t stream) {
  BATON_RETURN_IF_ERROR(CheckArgs(dims, {dout, q, k, v, out, lse, dq, dk, dv}));
  std::lock_guard<std::mutex> lock(g_cache_mu);
  cudnnHandle_t handle = nullptr;
  BATON_ASSIGN_OR_RETURN(Plan * p, GetPlan(dims, /*backward=*/true, &handle));
  return CudnnContext(Execute(*p, handle, stream,
                              {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v),
                               const_cast<void*>(out), const_cast<void*>(dout),
                               const_cast<float*>(lse), dq, dk, dv}),
                      "cuDNN attention bwd");
}

absl::Status CudnnAttentionBuildOps(const AttentionDims& dims, bool backward) {
  Plan p;
  return backward ? BuildBackwardOps(dims, p) : BuildForwardOps(dims, p);
}

absl::StatusOr<std::string> CudnnAttentionPlanInfoForDevice(const AttentionDims& dims,
                                                            bool backward,
                                                            const std::string& device_json) {
  CudnnDesc prop;
  BATON_RETURN_IF_ERROR(prop.Create(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR));
  BATON_CHECK_CUDNN(cudnnBackendSetAttribute(
      prop.get(), CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
      static_cast<int64_t>(device_json.size()), device_json.data()));
  BATON_CHECK_CUDNN(cudnnBackendFinalize(prop.get()));
  Plan p;
  p.scale = 1.0f / std::sqrt(static_cast<float>(dims.d));
  BATON_RETURN_IF_ERROR(backward ? BuildBackwardOps(dims, p) : BuildForwardOps(dims, p));
  BATON_RETURN_IF_ERROR(FinalizePlan(nullptr, /*deterministic=*/backward, p, prop.get()));
  return p.info;
}

absl::StatusOr<std::string> CudnnAttentionPlanInfo(const AttentionDims& dims, bool backward) {
  std::lock_guard<std::mutex> lock(g_cache_mu);
  cudnnHandle_t handle = nullptr;
  BATON_ASSIGN_OR_RETURN(Plan * p, GetPlan(dims, backward, &handle));
  return p->info;
}

absl::Status CudnnAttentionPrepare(const AttentionDims& dims, bool backward) {
  std::lock_guard<std::mutex> lock(g_cache_mu);
  cudnnHandle_t handle = nullptr;
  return GetPlan(dims, backward, &handle).status();
}

}  // namespace baton::cuda

#else  // !BATON_HAVE_CUDNN

namespace baton::cuda {

namespace {
absl::Status NotBuilt() {
  return absl::UnimplementedError("built without cuDNN (BATON_HAVE_CUDNN undefined)");
}
}  // namespace

bool CudnnAttentionBuilt() { return false; }
void SetCudnnAttentionRequireDeterministic(bool) {}
std::string CudnnAttentionVersion() { return "built without cuDNN"; }
absl::Status CudnnAttentionForward(const void*, const void*, const void*, const AttentionDims&,
                                   void*, float*, cudaStream_t) {
  return NotBuilt();
}
absl::Status CudnnAttentionBackward(const void*, const void*, const void*, const void*, const void*,
                                    const float*, const AttentionDims&, void*, void*, void*,
                                    cudaStream_t) {
  return NotBuilt();
}
absl::StatusOr<std::string> CudnnAttentionPlanInfo(const AttentionDims&, bool) {
  return NotBuilt();
}
absl::Status CudnnAttentionBuildOps(const AttentionDims&, bool) { return NotBuilt(); }
absl::Status CudnnAttentionPrepare(const AttentionDims&, bool) { return NotBuilt(); }
absl::StatusOr<std::string> CudnnAttentionPlanInfoForDevice(const AttentionDims&, bool,
                                                            const std::string&) {
  return NotBuilt();
}

}  // namespace baton::cuda

#endif  // BATON_HAVE_CUDNN
