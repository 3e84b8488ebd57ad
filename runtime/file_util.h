// Reading a whole file into memory: the one helper every reader of small
// text or JSON files uses (tokenizer JSON, corpora, HF config.json,
// checkpoint indexes, configs), so that each failure reads the same way:
// NotFound "PATH: No such file or directory" when it cannot be opened
// (InvalidArgument for other reasons, e.g. a directory or no permission),
// DataLoss "PATH: read failed: ..." when reading stops midway.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace baton {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace baton
