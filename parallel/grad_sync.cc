// Bucketed, overlapped data-parallel gradient sum (see grad_sync.h).
#include "parallel/grad_sync.h"

#include <utility>

#include "kernels/check.h"
#include "runtime/cuda_allocator.h"

namespace baton {

GradSync::GradSync(Communicator& dp, std::vector<std::vector<Param>*> chunks, int64_t bucket_bytes)
    : dp_(dp), chunks_(std::move(chunks)) {
  bucket_of_.resize(chunks_.size());
  count_.resize(chunks_.size());
  Bucket current;
  int64_t elements = 0, bytes = 0;
  auto close = [&] {
    if (current.members.empty()) return;
    const Tensor& g0 = (*chunks_[current.members[0].chunk])[current.members[0].index].grad;
    Allocator* alloc = g0.device() == Device::kCpu ? DefaultCpuAllocator()
                                                   : static_cast<Allocator*>(DefaultCudaAllocator());
    current.flat = Tensor::Empty({elements}, g0.dtype(), alloc);
    buckets_.push_back(std::move(current));
    current = Bucket();
    elements = bytes = 0;
  };
  for (int c = static_cast<int>(chunks_.size()) - 1; c >= 0; --c) {
    std::vector<Param>& params = *chunks_[c];
    bucket_of_[c].assign(params.size(), -1);
    count_[c].assign(params.size(), 0);
    for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
      const Tensor& g = params[i].grad;
      current.members.push_back({c, i, elements});
      bucket_of_[c][i] = static_cast<int>(buckets_.size());
      elements += g.numel();
      bytes += static_cast<int64_t>(g.nbytes());
      if (bucket_bytes > 0 && bytes >= bucket_bytes) close();
    }
  }
  close();
}

void GradSync::BeginStep(int microbatches) {
  microbatches_ = microbatches;
  next_launch_ = 0;
  started_early_ = 0;
  status_ = absl::OkStatus();
  for (auto& counts : count_) std::fill(counts.begin(), counts.end(), 0);
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.members.size());
    b.request.reset();
  }
}

void GradSync::Launch(Bucket& b) {
  for (const Member& m : b.members) {
    const Tensor& g = (*chunks_[m.chunk])[m.index].grad;
    b.flat.Slice(m.offset, g.numel()).CopyFrom(g.Reshape({g.numel()}));
  }
  absl::StatusOr<CommRequestPtr> req = dp_.IAllReduceSum(b.flat);
  if (!req.ok()) {
    if (status_.ok()) status_ = req.status();
    return;
  }
  b.request = *std::move(req);
}

void GradSync::LaunchReady() {
  while (status_.ok() && next_launch_ < num_buckets() && buckets_[next_launch_].pending == 0) {
    Launch(buckets_[next_launch_++]);
    ++started_early_;
  }
  for (Bucket& b : buckets_) {
    if (b.request != nullptr) b.request->Test();
  }
}

void GradSync::OnGradsReady(int chunk, int first, int end) {
  BATON_CHECK(chunk >= 0 && chunk < static_cast<int>(chunks_.size()));
  for (int i = first; i < end; ++i) {
    if (++count_[chunk][i] == microbatches_) --buckets_[bucket_of_[chunk][i]].pending;
  }
  LaunchReady();
}

absl::Status GradSync::Finish() {
  while (status_.ok() && next_launch_ < num_buckets()) Launch(buckets_[next_launch_++]);
  absl::Status first = status_;
  for (Bucket& b : buckets_) {
    if (b.request == nullptr) continue;
    absl::Status st = b.request->Wait();
    b.request.reset();
    if (!st.ok()) {
      if (first.ok()) first = st;
      continue;
    }
    for (const Member& m : b.members) {
      Tensor& g = (*chunks_[m.chunk])[m.index].grad;
      g.Reshape({g.numel()}).CopyFrom(b.flat.Slice(m.offset, g.numel()));
    }
  }
  return first;
}

}  // namespace baton
