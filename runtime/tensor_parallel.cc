// TpOps: the model's calls into its tp group (see tensor_parallel.h).
#include "runtime/tensor_parallel.h"

#include "absl/strings/str_cat.h"

namespace baton {

absl::Status TpOps::InContext(const char* what, const absl::Status& s) const {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("tp ", what, " (tp rank ", tp_.rank, " of ", tp_.size, "): ", s.message()));
}

absl::Status TpOps::AllReduceSum(Tensor& t) {
  if (!active()) return absl::OkStatus();
  return InContext("all-reduce sum", tp_.comm->AllReduceSum(t));
}

absl::Status TpOps::AllReduceMax(Tensor& t) {
  if (!active()) return absl::OkStatus();
  return InContext("all-reduce max", tp_.comm->AllReduceMax(t));
}

absl::Status TpOps::AllGather(const Tensor& in, Tensor& out) {
  if (!active()) {
    if (in.raw() != out.raw()) out.CopyFrom(in);
    return absl::OkStatus();
  }
  return InContext("all-gather", tp_.comm->AllGather(in, out));
}

absl::Status TpOps::ReduceScatterSum(const Tensor& in, Tensor& out) {
  if (!active()) {
    if (in.raw() != out.raw()) out.CopyFrom(in);
    return absl::OkStatus();
  }
  return InContext("reduce-scatter sum", tp_.comm->ReduceScatterSum(in, out));
}

}  // namespace baton
