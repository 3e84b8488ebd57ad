// Fuzzes the JSONL request reader of `baton infer` (launcher/infer_io):
// format detection and the line parser in both formats. Every line must
// become exactly one of a request or an error, and the error must format
// as one output line.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kernels/check.h"
#include "launcher/infer_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)baton::DetectInferFormat(text);
  for (baton::InferFormat f : {baton::InferFormat::kBaton, baton::InferFormat::kOpenAi}) {
    baton::ParsedLine p = baton::ParseInferLine(text, 1, f);
    BATON_CHECK(p.request.has_value() != p.error.has_value());
    if (p.error) {
      const std::string line = baton::FormatError(f, *p.error);
      BATON_CHECK(line.find('\n') == std::string::npos || line.find('\n') == line.size() - 1);
    }
    if (p.request) (void)baton::IdKey(p.request->id);
  }
  return 0;
}
