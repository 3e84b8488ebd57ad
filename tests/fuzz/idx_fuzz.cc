// Fuzzes the Megatron .idx/.bin reader (runtime/indexed_dataset). Input:
// 2 bytes of .bin size (little endian, a deterministic byte pattern of
// that length), then the .idx bytes. Open must refuse any index that
// would let a reader leave the mapping; a dataset that opens must then
// read every sequence, document index and the token id range cleanly.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/indexed_dataset.h"

namespace {

void WriteBytes(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t bin_size = data[0] | (size_t{data[1]} << 8);
  std::vector<uint8_t> bin(bin_size);
  for (size_t i = 0; i < bin_size; ++i) bin[i] = static_cast<uint8_t>(i * 37 + 11);
  const std::string prefix = "/tmp/baton_idx_fuzz_" + std::to_string(::getpid());
  WriteBytes(prefix + ".bin", bin.data(), bin.size());
  WriteBytes(prefix + ".idx", data + 2, size - 2);
  absl::StatusOr<baton::IndexedDataset> ds = baton::IndexedDataset::Open(prefix);
  if (ds.ok()) {
    int64_t tokens = 0;
    for (int64_t s = 0; s < ds->num_sequences(); ++s) tokens += static_cast<int64_t>(ds->Get(s).size());
    for (int64_t d = 0; d <= ds->num_documents(); ++d) (void)ds->document_index(d);
    (void)ds->CheckTokenIds(50000);
    if (tokens != ds->num_tokens()) __builtin_trap();
  }
  return 0;
}
