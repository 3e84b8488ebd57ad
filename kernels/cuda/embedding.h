// Token embedding on the GPU (reference: kernels/cpu/embedding.h).
// out (n, c) = table[tokens − vocab_start] for tokens in [vocab_start,
// vocab_start + v_local), zeros otherwise (vocab-parallel). Backward
// accumulates dout into dtable (dtable in `t_table`: f32 or like dout).
// The backward is deterministic without atomics or sorting: each thread
// owns one column and walks the tokens in order, exactly as the CPU does,
// so f32 results match the CPU bit for bit. Parallelism is only c threads;
// fine for a first step, a segmented reduction over sorted tokens later.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/types.h"

namespace baton::cuda {

absl::Status EmbeddingForward(Float t, const int32_t* tokens, const void* table,
                              int64_t vocab_start, int64_t v_local, int64_t n, int64_t c,
                              void* out, cudaStream_t stream);
absl::Status EmbeddingBackward(Float t_dout, Float t_table, const void* dout,
                               const int32_t* tokens, int64_t vocab_start, int64_t v_local,
                               int64_t n, int64_t c, void* dtable, cudaStream_t stream);

}  // namespace baton::cuda
