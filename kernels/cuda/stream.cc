// Per-thread current stream (see stream.h).
#include "kernels/cuda/stream.h"

namespace baton::cuda {
namespace {
thread_local cudaStream_t current_stream = nullptr;
}  // namespace

cudaStream_t CurrentStream() { return current_stream; }
void SetCurrentStream(cudaStream_t stream) { current_stream = stream; }

}  // namespace baton::cuda
