// The model's tensor-parallel collectives (runtime/tensor_parallel.h) over
// a Communicator of the tp group. The max all-reduce (vocab-parallel
// softmax) is an all-gather and an elementwise max, which every rank
// computes on the same gathered values: the same bits everywhere.
#pragma once

#include "parallel/communicator.h"
#include "runtime/tensor_parallel.h"

namespace baton {

class CommTpCollectives final : public TpCollectives {
 public:
  explicit CommTpCollectives(Communicator& comm) : comm_(comm) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  absl::Status AllReduceSum(Tensor& t) override { return comm_.AllReduceSum(t); }
  absl::Status AllReduceMax(Tensor& t) override;
  absl::Status AllGather(const Tensor& in, Tensor& out) override { return comm_.AllGather(in, out); }
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override { return comm_.ReduceScatterSum(in, out); }

 private:
  Communicator& comm_;
};

}  // namespace baton
