// Causal GQA attention, bf16, through cuDNN's fused flash-attention engines
// (cuDNN 9 backend graph API; no cudnn-frontend). Same contract as
// attention.h: q, out, dout, dq (b, t, h, d); k, v, dk, dv (b, t, kv, d)
// bf16; lse (b, h, t) f32 natural-log log-sum-exp of the scaled scores.
// attention.cu calls these when AttentionUsesCudnn() says so and falls back
// to FlashAttention-2 when a shape has no engine (status Unimplemented).
// One execution plan per (device, b, t, h, kv, d, direction), built on first
// use (or ahead of it, CudnnAttentionPrepare) and cached for the process;
// plans and their handle are used under one lock, since a cuDNN handle may
// change threads but not serve two at once. The backward is built
// deterministically (cudnn-frontend's "dP workspace" graph on Hopper, and
// engines noted NONDETERMINISTIC are refused), so recompute policies give
// the same bits. Without cuDNN (BATON_HAVE_CUDNN undefined) every call
// returns Unimplemented.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/attention.h"

namespace baton::cuda {

// Whether this binary was built with cuDNN.
bool CudnnAttentionBuilt();
// Diagnostics only (attention_bench): false lets backward plans use engines
// noted NONDETERMINISTIC, to measure what the determinism filter costs.
// Training never changes it (default true); plans are cached per setting.
void SetCudnnAttentionRequireDeterministic(bool require);
// "cuDNN 91900 (built against 91900)" or why not; for benchmark headers.
std::string CudnnAttentionVersion();

absl::Status CudnnAttentionForward(const void* q, const void* k, const void* v,
                                   const AttentionDims& dims, void* out, float* lse,
                                   cudaStream_t stream);
absl::Status CudnnAttentionBackward(const void* dout, const void* q, const void* k, const void* v,
                                    const void* out, const float* lse, const AttentionDims& dims,
                                    void* dq, void* dk, void* dv, cudaStream_t stream);

// Builds the plan for dims on the current device ahead of its first use
// (NVRTC compiles the engine: ~0.1-1 s per shape); from any thread, e.g.
// while the host initialises the weights. Unimplemented: no plan here.
absl::Status CudnnAttentionPrepare(const AttentionDims& dims, bool backward);
// Builds (or finds) the plan for dims on the current device and describes
// it: engine index, workspace bytes, build time. The error says which call
// or engine failed. For benchmarks and tests.
absl::StatusOr<std::string> CudnnAttentionPlanInfo(const AttentionDims& dims, bool backward);
// Only the graph's tensor and operation descriptors (no handle, no GPU):
// checks every attribute cuDNN is given; for tests on machines without a GPU.
absl::Status CudnnAttentionBuildOps(const AttentionDims& dims, bool backward);
// The whole plan build (heuristics, engine finalize) for a described device
// instead of this one: device_json is cuDNN's DEVICEPROP JSON
// representation. Lets a machine without a GPU check that cuDNN's engines
// accept the graphs; the plan is discarded.
absl::StatusOr<std::string> CudnnAttentionPlanInfoForDevice(const AttentionDims& dims,
                                                            bool backward,
                                                            const std::string& device_json);

}  // namespace baton::cuda
