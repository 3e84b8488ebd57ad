// Data-parallel gradient sum in buckets, each launched as soon as its
// gradients are final, so the sum of the last layers' grads travels while
// the backward of the first layers still runs (DDP/Megatron style). The
// models report, through their grad-ready hooks (Model::SetGradReadyHook),
// each time a range of params received one micro-batch's contribution; a
// param is final after `microbatches` reports, whatever the schedule. A
// bucket is a run of params in backward order (last chunk first, last param
// first) of about bucket_bytes; buckets start strictly in that order, so
// every dp rank issues the same collectives in the same order.
// Invariant: the result equals an AllReduceSum of every grad on its own, to
// the bit (the backend folds each element in rank order; bucketing only
// moves elements side by side).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "parallel/communicator.h"
#include "runtime/param.h"

namespace baton {

class GradSync {
 public:
  // chunks[c]: the params of this rank's model chunk c (their vectors must
  // outlive this object and keep their size). Grads: one dtype, host or
  // device as the communicator expects. bucket_bytes ≤ 0: one bucket.
  GradSync(Communicator& dp, std::vector<std::vector<Param>*> chunks, int64_t bucket_bytes);

  // Starts a step whose params each receive `microbatches` contributions.
  void BeginStep(int microbatches);
  // Hook target: params [first, end) of chunk `chunk` got one more
  // contribution. Starts every bucket that became ready (in order) and
  // advances those in flight. The first error is kept for Finish.
  void OnGradsReady(int chunk, int first, int end);
  // Starts what has not started (params no hook reported), waits for every
  // bucket and writes the sums back into the grads.
  absl::Status Finish();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Buckets started from hooks (before Finish) in the last step: how much
  // of the sum overlapped the backward.
  int started_early() const { return started_early_; }

 private:
  struct Member {
    int chunk, index;
    int64_t offset;  // elements into the bucket's flat buffer
  };
  struct Bucket {
    std::vector<Member> members;
    Tensor flat;
    int pending = 0;  // members not yet final this step
    CommRequestPtr request;
  };

  void Launch(Bucket& b);
  void LaunchReady();

  Communicator& dp_;
  std::vector<std::vector<Param>*> chunks_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<int>> bucket_of_;  // [chunk][param]
  std::vector<std::vector<int>> count_;      // [chunk][param] contributions this step
  int microbatches_ = 1;
  int next_launch_ = 0;
  int started_early_ = 0;
  absl::Status status_;
};

}  // namespace baton
