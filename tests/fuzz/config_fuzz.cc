// Fuzzes the job config reader (launcher/config ParseJobConfig: TOML, then
// every type and range check): any text must give a config or an error,
// never a crash, a sanitizer report or an uncaught exception. A valid
// config must also survive a second validation unchanged in verdict.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kernels/check.h"
#include "launcher/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<baton::JobConfig> config = baton::ParseJobConfig(text, "fuzz.toml", {});
  if (config.ok()) {
    BATON_CHECK(baton::ValidateJobConfig(*config).ok());
    (void)config->microbatches();
  }
  return 0;
}
