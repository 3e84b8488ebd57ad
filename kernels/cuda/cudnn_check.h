// cuDNN return codes as absl::Status, converted in one place with the
// failing expression, file:line, the status name and cuDNN's own last error
// message (cudnnGetLastErrorString: it names the attribute or the engine
// that refused, which the code alone does not). Only compiled where cuDNN
// was found (BATON_HAVE_CUDNN). NOT_SUPPORTED* maps to Unimplemented, so a
// caller can tell "this graph/shape has no engine" (fall back) from a real
// failure; BAD_PARAM* to InvalidArgument; allocation failures to
// ResourceExhausted; everything else to Internal.
#pragma once

#ifdef BATON_HAVE_CUDNN

#include <cudnn.h>

#include "absl/status/status.h"
#include "kernels/check.h"

namespace baton {

absl::Status FromCudnn(cudnnStatus_t s, const char* expr, const char* file, int line);

}  // namespace baton

#define BATON_CHECK_CUDNN(x) BATON_RETURN_IF_ERROR(::baton::FromCudnn((x), #x, __FILE__, __LINE__))

#endif  // BATON_HAVE_CUDNN
