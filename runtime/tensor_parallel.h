// Tensor parallelism as the model sees it: the size and rank of its tp
// group, the collectives over it, and whether the sequence is sharded too.
// runtime/ knows nothing of ranks or MPI (DESIGN.md), so the collectives
// come in through TpCollectives, which parallel/tp_collectives.h implements
// over a Communicator. TpOps is what the layers call: it skips everything
// at tp = 1 and returns each collective's Status, which the layers
// (transformer_layer.h) pass up with the op's.
#pragma once

#include "absl/status/status.h"
#include "runtime/tensor.h"

namespace baton {

class TpCollectives {
 public:
  virtual ~TpCollectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual absl::Status AllReduceSum(Tensor& t) = 0;                          // in place
  virtual absl::Status AllReduceMax(Tensor& t) = 0;                          // in place
  virtual absl::Status AllGather(const Tensor& in, Tensor& out) = 0;         // dim 0, rank order
  virtual absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) = 0;  // dim 0, rank order
};

struct TensorParallel {
  int size = 1, rank = 0;
  TpCollectives* comm = nullptr;   // required when size > 1; must outlive the model
  bool sequence_parallel = false;  // residual stream and norms sharded along the tokens
};

class TpOps {
 public:
  explicit TpOps(TensorParallel tp = {}) : tp_(tp) {}
  bool active() const { return tp_.size > 1; }
  bool sp() const { return tp_.size > 1 && tp_.sequence_parallel; }
  int size() const { return tp_.size; }
  int rank() const { return tp_.rank; }
  const TensorParallel& config() const { return tp_; }

  // No-ops at tp = 1 (AllGather/ReduceScatter then copy in to out). An
  // error names the collective and the tp rank and size.
  absl::Status AllReduceSum(Tensor& t);
  absl::Status AllReduceMax(Tensor& t);
  absl::Status AllGather(const Tensor& in, Tensor& out);
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out);

 private:
  absl::Status InContext(const char* what, const absl::Status& s) const;
  TensorParallel tp_;
};

}  // namespace baton
