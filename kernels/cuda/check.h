// CUDA and cuBLAS return codes as absl::Status, converted in one place with
// the failing expression and file:line (STYLE.md "Errors"). Out of memory
// maps to ResourceExhausted, bad arguments to InvalidArgument, everything
// else to Internal. Use BATON_CHECK_CUDA(cudaMalloc(...)) in any function
// that returns absl::Status; BATON_CUDA_LAUNCH_CHECK() after every launch.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

absl::Status FromCuda(cudaError_t e, const char* expr, const char* file, int line);
absl::Status FromCublas(cublasStatus_t s, const char* expr, const char* file, int line);

}  // namespace baton

#define BATON_CHECK_CUDA(x) BATON_RETURN_IF_ERROR(::baton::FromCuda((x), #x, __FILE__, __LINE__))
#define BATON_CHECK_CUBLAS(x) \
  BATON_RETURN_IF_ERROR(::baton::FromCublas((x), #x, __FILE__, __LINE__))
// After a <<<...>>> launch: configuration errors surface here, not later.
#define BATON_CUDA_LAUNCH_CHECK() BATON_CHECK_CUDA(cudaGetLastError())
// A size a kernel's launch cannot take (grid limits, 32-bit row indices):
// InvalidArgument with the condition and file:line, not an abort, because
// the sizes come from the caller's shapes.
#define BATON_CUDA_SIZE_CHECK(cond)                                                              \
  do {                                                                                           \
    if (!(cond))                                                                                 \
      return ::absl::InvalidArgumentError(                                                       \
          ::absl::StrCat(__FILE__, ":", __LINE__, ": sizes out of the kernel's range: ", #cond)); \
  } while (0)
