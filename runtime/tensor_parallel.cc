// TpOps: the model's calls into its tp group (see tensor_parallel.h).
#include "runtime/tensor_parallel.h"

namespace baton {

void TpOps::AllReduceSum(Tensor& t) {
  if (active() && status_.ok()) Keep(tp_.comm->AllReduceSum(t));
}

void TpOps::AllReduceMax(Tensor& t) {
  if (active() && status_.ok()) Keep(tp_.comm->AllReduceMax(t));
}

void TpOps::AllGather(const Tensor& in, Tensor& out) {
  if (!active()) {
    if (in.raw() != out.raw()) out.CopyFrom(in);
    return;
  }
  if (status_.ok()) Keep(tp_.comm->AllGather(in, out));
}

void TpOps::ReduceScatterSum(const Tensor& in, Tensor& out) {
  if (!active()) {
    if (in.raw() != out.raw()) out.CopyFrom(in);
    return;
  }
  if (status_.ok()) Keep(tp_.comm->ReduceScatterSum(in, out));
}

}  // namespace baton
