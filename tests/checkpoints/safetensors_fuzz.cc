// libFuzzer target for the safetensors reader: any byte string must give
// either InvalidArgument or a header whose tensors lie inside the image, and
// an accepted file must open and read (ReadAsF32) without touching memory
// outside the mapping. Not a gtest (the name does not end in _test.cc), so
// CMake does not glob it. Build and run by hand with clang:
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//     tests/checkpoints/safetensors_fuzz.cc checkpoints/safetensors.cc \
//     kernels/cpu/convert.cc runtime/tensor.cc \
//     $(pkg-config --libs absl_status absl_statusor absl_strings) -o /tmp/safetensors_fuzz
//   mkdir -p /tmp/st_corpus && cp tests/data/golden_small.safetensors /tmp/st_corpus/
//   /tmp/safetensors_fuzz -max_total_time=300 /tmp/st_corpus
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "checkpoints/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<baton::SafetensorsHeader> h = baton::ParseSafetensors({data, size}, "fuzz");
  if (!h.ok()) {
    BATON_CHECK(h.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  for (const baton::SafetensorsEntry& e : h->entries) {
    BATON_CHECK(e.begin <= e.end && h->data_start + e.end <= size);
  }
  // Accepted: go through the file path too (mmap, Find, Bytes, ReadAsF32).
  static const std::string path = "/tmp/safetensors_fuzz." + std::to_string(getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  BATON_CHECK(f != nullptr);
  BATON_CHECK(std::fwrite(data, 1, size, f) == size);
  std::fclose(f);
  absl::StatusOr<baton::SafetensorsFile> file = baton::SafetensorsFile::Open(path);
  BATON_CHECK(file.ok());
  for (const baton::SafetensorsEntry& e : file->entries()) {
    BATON_CHECK(file->Find(e.name) == &e);
    absl::Span<const uint8_t> bytes = file->Bytes(e);
    BATON_CHECK(bytes.size() == e.end - e.begin);
    if (e.end - e.begin <= (1 << 20)) (void)file->ReadAsF32(e.name);
  }
  return 0;
}
