// HDF5 error conversion (see h5.h).
#include "checkpoints/h5.h"

#include <mutex>

#include "absl/strings/str_cat.h"

namespace baton {
namespace {

// The innermost (most specific) description on HDF5's default error stack.
std::string InnermostHdf5Message() {
  std::string msg;
  auto walk = [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
    auto* s = static_cast<std::string*>(out);
    if (n == 0 && e->desc != nullptr) *s = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &msg);
  H5Eclear2(H5E_DEFAULT);
  for (char& c : msg) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return msg.empty() ? "unknown HDF5 error" : msg;
}

}  // namespace

void Hdf5Init() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

absl::Status FromHdf5(int64_t code, const char* expr, const std::string& file, const char* src, int line) {
  if (code >= 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(expr, " failed on ", file, ": ", InnermostHdf5Message(), " (", src, ":", line, ")"));
}

}  // namespace baton
