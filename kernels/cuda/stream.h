// The stream every op-table launch goes to. One per thread, default the
// legacy stream 0 until a runtime component (the trainer, a communicator)
// sets its own; kernels take the stream as an argument and never read this,
// only the op table (runtime/ops_cuda.cc) and Tensor copies do.
#pragma once

#include <cuda_runtime_api.h>

namespace baton::cuda {

cudaStream_t CurrentStream();
void SetCurrentStream(cudaStream_t stream);

}  // namespace baton::cuda
