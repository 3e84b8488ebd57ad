// The Hugging Face interop commands behind the CLI (launcher/cli.cc
// dispatches to them; checkpoints/hf_model.h does the format work):
//   baton import --hf DIR --out CKPT
//   baton export --checkpoint CKPT --format hf --out DIR [--dtype f32|bf16]
//   baton parity-dump --checkpoint CKPT --tokens FILE --out FILE   (developer tool)
// Each takes the arguments after its command name, prints one summary line
// on success and returns a Status whose message is the one-line error
// (InvalidArgument/NotFound for bad input, so the CLI exits 2).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace baton {

// Writes a baton checkpoint (params/<name> in f32, step 0, attrs "config" =
// a full job TOML with the imported [model], "hf_config" = the source
// config.json text) from a Llama/Qwen2 directory.
absl::Status RunImportCommand(const std::vector<std::string>& args);

// Writes an HF directory from any baton checkpoint (its attrs "config" gives
// the model). Also takes --max-shard-bytes N (default 2e9; tests use small
// values to force shards). max_position_embeddings and the bos/eos ids come
// from the "hf_config" attribute of an imported checkpoint, else
// train.seq_len and the byte tokenizer's 256/257.
absl::Status RunExportCommand(const std::vector<std::string>& args);

// Reads "input_ids" (B, T) I64/I32 from a safetensors file, and writes
// "logits" (B·T, V) f32, "loss" (1) f64 = HF's mean loss with
// labels = input_ids, "count" (1) i32 = the number of counted targets,
// and "grad.<HF name>" f32 for every parameter: the gradient of that loss.
absl::Status RunParityDumpCommand(const std::vector<std::string>& args);

}  // namespace baton
