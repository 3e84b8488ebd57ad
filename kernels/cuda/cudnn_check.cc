// Conversion of cuDNN codes to absl::Status (see cudnn_check.h).
#ifdef BATON_HAVE_CUDNN

#include "kernels/cuda/cudnn_check.h"

#include "absl/strings/str_cat.h"

namespace baton {

absl::Status FromCudnn(cudnnStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return absl::OkStatus();
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  std::string msg = absl::StrCat(file, ":", line, ": ", expr, ": ", cudnnGetErrorString(s), " (",
                                 static_cast<int>(s), ")");
  if (detail[0] != '\0') absl::StrAppend(&msg, ": ", detail);
  if (s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    return absl::ResourceExhaustedError(msg);
  switch (CUDNN_STATUS_CATEGORY(s)) {
    case CUDNN_STATUS_BAD_PARAM: return absl::InvalidArgumentError(msg);
    case CUDNN_STATUS_NOT_SUPPORTED: return absl::UnimplementedError(msg);
    case 1000: return absl::FailedPreconditionError(msg);  // init, version, library loading
    default: return absl::InternalError(msg);
  }
}

}  // namespace baton

#endif  // BATON_HAVE_CUDNN
