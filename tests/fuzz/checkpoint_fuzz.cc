// Fuzzes the checkpoint reader (checkpoints/checkpoint ReadCheckpoint,
// through HDF5) on arbitrary bytes written to a temporary file: a damaged
// or foreign file must be an error naming it, never a crash. With
// BATON_FUZZ_SEED=DIR set, first writes a small valid checkpoint there as
// a seed for the corpus (scripts/fuzz.sh does).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "checkpoints/checkpoint.h"
#include "kernels/check.h"

namespace {

void WriteSeed(const std::string& dir) {
  baton::CheckpointData d;
  d.step = 7;
  for (const char* name : {"params/embed", "adam/m/embed"}) {
    baton::Tensor t = baton::Tensor::Empty({3, 4}, baton::DType::kF32);
    for (int i = 0; i < 12; ++i) t.data<float>()[i] = 0.25f * static_cast<float>(i);
    d.tensors.push_back({name, t});
  }
  d.attrs["config"] = "[model]\nlayers = 1\n";
  d.attrs["sampler"] = "{\"epoch\": 0, \"position\": 3}";
  const absl::Status s = baton::WriteCheckpoint(dir + "/seed.h5", d);
  if (!s.ok()) std::fprintf(stderr, "checkpoint_fuzz: seed: %s\n", std::string(s.message()).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("BATON_FUZZ_SEED")) WriteSeed(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = "/tmp/baton_ckpt_fuzz_" + std::to_string(::getpid()) + ".h5";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  absl::StatusOr<baton::CheckpointData> c = baton::ReadCheckpoint(path);
  if (c.ok()) {
    for (const baton::CheckpointTensor& t : c->tensors) BATON_CHECK(c->Find(t.name) != nullptr);
  } else {
    BATON_CHECK(std::string(c.status().message()).find(path) != std::string::npos);
  }
  return 0;
}
