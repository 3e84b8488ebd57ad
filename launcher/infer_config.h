// The [infer] section of `baton infer` (plus the [parallel] degrees), read
// from an optional TOML file and `--set infer.key=value` overrides. Kept
// apart from the training JobConfig: an inference job's model comes from
// its checkpoint, so its config holds only how to run it. Every error is
// one line naming the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace baton {

struct InferConfig {
  std::string device = "auto";        // "auto" (the CPU until the CUDA decode is checked on GPUs), "cpu" or "cuda"
  std::string dtype = "auto";         // compute: "auto" (cpu f32, cuda bf16), "f32", "f64" (cpu) or "bf16" (cuda)
  int64_t block_size = 16;            // tokens per KV-cache block; >= 1
  int64_t kv_cache_bytes = 256 << 20; // CPU: bytes of K and V for all layers; >= one block
  double kv_cache_fraction = 0.9;     // CUDA: fraction of free GPU memory for the cache after the weights, in (0, 1]
  int max_batch = 64;                 // sequences decoded together (slots); >= 1
  int64_t max_prefill_tokens = 4096;  // prompt tokens prefilled per step; a longer prompt runs alone; >= 1
  int64_t max_seq_len = 0;            // prompt + completion, tokens; 0 = the checkpoint's (HF
                                      // max_position_embeddings, else train.seq_len)
  // Per-request defaults (a line's own fields win).
  int64_t max_new_tokens = 128;       // >= 1
  double temperature = 1.0;           // 0 = greedy
  int top_k = 0;                      // 0 = off
  double top_p = 1.0;                 // 1 = off
  int64_t seed = 0;                   // base of the seeds of lines without one (mixed with the id); >= 0
  bool stop_at_eos = true;            // the tokenizer's EOS ends a completion
  bool cuda_graphs = true;            // CUDA: replay decode steps as CUDA graphs; false = eager (a fallback)
  bool add_bos = true;                // text prompts start with the tokenizer's BOS (as training framed documents)
  // Reporting.
  std::string metrics_prom;           // Prometheus text file written at the end (and every ~10 s); "" = off
  std::string progress = "auto";      // "auto" (a bar on a terminal), "bar" or "lines"
  // [parallel]: dp = world / (tp·pp); tp and pp > 1 on the CPU only so far.
  int tp = 1, pp = 1;

  absl::Status Validate() const;
};

// `path` may be empty (defaults + overrides only).
absl::StatusOr<InferConfig> LoadInferConfig(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace baton
