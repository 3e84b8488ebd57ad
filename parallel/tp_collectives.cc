// CommTpCollectives (see tp_collectives.h).
#include "parallel/tp_collectives.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace baton {
namespace {
template <typename T>
void MaxOver(const T* all, int n, int64_t count, T* out) {
  for (int64_t i = 0; i < count; ++i) {
    T m = all[i];
    for (int r = 1; r < n; ++r) m = std::max(m, all[r * count + i]);
    out[i] = m;
  }
}
}  // namespace

absl::Status CommTpCollectives::AllReduceMax(Tensor& t) {
  if (t.dtype() != DType::kF32 && t.dtype() != DType::kF64) {
    return absl::InvalidArgumentError(absl::StrCat("tp all_reduce_max: dtype ", DTypeName(t.dtype()), " (f32, f64)"));
  }
  const int n = comm_.size();
  if (n == 1) return absl::OkStatus();
  Tensor flat = t.Reshape({t.numel()});
  Tensor all = Tensor::Empty({n * t.numel()}, t.dtype());
  BATON_RETURN_IF_ERROR(comm_.AllGather(flat, all));
  if (t.dtype() == DType::kF32) {
    MaxOver(all.data<float>(), n, t.numel(), flat.data<float>());
  } else {
    MaxOver(all.data<double>(), n, t.numel(), flat.data<double>());
  }
  return absl::OkStatus();
}

}  // namespace baton
