// The vocab-parallel cross-entropy ops (contract in ops.h): the per-row
// max, sum of exponentials and target logit of one vocabulary shard, and
// the loss and gradient once the model has reduced those over the tp
// group. Checked once here (op_checks.h: statistics are f32 on CUDA, the
// logits' dtype on the CPU), dispatched through the op table like every
// other op; kernels in kernels/cpu/vocab_parallel_ce.h and
// kernels/cuda/vocab_parallel_ce.h.
#include "runtime/op_checks.h"
#include "runtime/op_table.h"
#include "runtime/ops.h"

namespace baton::ops {

using internal::Given;
using internal::OpArgs;

absl::Status RowMax(const Tensor& logits, Tensor& max) {
  const OpArgs k(OpId::kRowMax, logits);
  BATON_RETURN_IF_ERROR(k.FloatRank("logits", logits, 2));
  BATON_RETURN_IF_ERROR(k.Stat("max", max, logits, {logits.dim(0)}));
  return BATON_OP_DISPATCH(RowMax, k.device(), logits, max);
}

absl::Status RowSumExp(const Tensor& logits, const Tensor& max, Tensor& sum) {
  const OpArgs k(OpId::kRowSumExp, logits);
  BATON_RETURN_IF_ERROR(k.FloatRank("logits", logits, 2));
  BATON_RETURN_IF_ERROR(k.Stat("max", max, logits, {logits.dim(0)}));
  BATON_RETURN_IF_ERROR(k.Stat("sum", sum, logits, {logits.dim(0)}));
  return BATON_OP_DISPATCH(RowSumExp, k.device(), logits, max, sum);
}

absl::Status PickTargets(const Tensor& logits, const Tensor& targets, int64_t vocab_start, Tensor& target_logit) {
  const OpArgs k(OpId::kPickTargets, logits);
  BATON_RETURN_IF_ERROR(k.FloatRank("logits", logits, 2));
  BATON_RETURN_IF_ERROR(k.Ids("targets", targets, logits.dim(0)));
  BATON_RETURN_IF_ERROR(k.Stat("target_logit", target_logit, logits, {logits.dim(0)}));
  return BATON_OP_DISPATCH(PickTargets, k.device(), logits, targets, vocab_start, target_logit);
}

absl::Status VocabParallelCrossEntropy(const Tensor& logits, const Tensor& targets, int64_t vocab_start,
                                       const Tensor& max, const Tensor& sum, const Tensor& target_logit,
                                       Tensor& losses, Tensor* dlogits, float grad_scale) {
  const OpArgs k(OpId::kVocabParallelCrossEntropy, logits);
  BATON_RETURN_IF_ERROR(k.FloatRank("logits", logits, 2));
  const int64_t n = logits.dim(0);
  BATON_RETURN_IF_ERROR(k.Ids("targets", targets, n));
  BATON_RETURN_IF_ERROR(k.Stat("max", max, logits, {n}));
  BATON_RETURN_IF_ERROR(k.Stat("sum", sum, logits, {n}));
  BATON_RETURN_IF_ERROR(k.Stat("target_logit", target_logit, logits, {n}));
  BATON_RETURN_IF_ERROR(k.Stat("losses", losses, logits, {n}));
  if (Given(dlogits)) BATON_RETURN_IF_ERROR(k.Like("dlogits", *dlogits, logits, logits.shape()));  // may alias
  return BATON_OP_DISPATCH(VocabParallelCrossEntropy, k.device(), logits, targets, vocab_start, max, sum,
                           target_logit, losses, Given(dlogits) ? dlogits : nullptr, grad_scale);
}

}  // namespace baton::ops
