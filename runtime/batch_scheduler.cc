// Continuous-batching decisions (see batch_scheduler.h).
#include "runtime/batch_scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

BatchScheduler::BatchScheduler(const SchedulerConfig& config, KvBlockPool& pool, int64_t block_size)
    : config_(config), pool_(&pool), block_size_(block_size) {
  BATON_CHECK(config.max_batch >= 1 && block_size >= 1);
}

absl::StatusOr<int64_t> BatchScheduler::Add(int64_t handle, int64_t prompt_tokens, int64_t max_total) {
  const int64_t capacity = pool_->num_blocks() * block_size_;
  if (prompt_tokens < 1) return absl::InvalidArgumentError("the prompt has no token");
  if (prompt_tokens > capacity) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", prompt_tokens, " tokens but the KV cache holds ",
                                                   capacity, " (raise infer.kv_cache_bytes or kv_cache_fraction)"));
  }
  BATON_CHECK_MSG(seqs_.find(handle) == seqs_.end(), "BatchScheduler::Add: handle already live");
  Seq s;
  s.length = prompt_tokens;
  seqs_.emplace(handle, std::move(s));
  waiting_.push_back(handle);
  return std::min(std::max(max_total, prompt_tokens), capacity);
}

void BatchScheduler::Preempt(int64_t handle) {
  Seq& s = seqs_.at(handle);
  pool_->Free(s.table);
  s.cached = 0;
  running_.erase(std::find(running_.begin(), running_.end(), handle));
  waiting_.push_front(handle);
  ++stats_.preemptions;
}

bool BatchScheduler::GrowOrPreempt(int64_t handle) {
  Seq& s = seqs_.at(handle);
  const int64_t need = BlocksForTokens(s.length, block_size_) - static_cast<int64_t>(s.table.size());
  while (need > pool_->num_free()) {
    // Evict the newest sequence: it has the least work to redo.
    const int64_t victim = running_.back();
    Preempt(victim);
    if (victim == handle) return false;
  }
  if (need > 0) BATON_CHECK(pool_->Allocate(need, s.table));
  return true;
}

std::vector<BatchScheduler::Item> BatchScheduler::Schedule() {
  std::vector<Item> items;
  // 1. Running sequences first: they hold blocks already and must finish.
  for (size_t i = 0; i < running_.size();) {
    const int64_t h = running_[i];
    if (GrowOrPreempt(h)) ++i;  // else h left running_, which now ends before i
  }
  // 2. Refill free slots from the queue, in order, while blocks and the prefill budget last.
  const bool batch_in_flight = !running_.empty();
  int64_t prefill_tokens = 0;
  while (!waiting_.empty() && static_cast<int>(running_.size()) < config_.max_batch) {
    const int64_t h = waiting_.front();
    Seq& s = seqs_.at(h);
    const int64_t blocks = BlocksForTokens(s.length, block_size_);
    if (prefill_tokens > 0 && prefill_tokens + s.length > config_.max_prefill_tokens) break;
    if (blocks > pool_->num_free()) break;  // first in, first served: no overtaking
    BATON_CHECK(pool_->Allocate(blocks, s.table));
    waiting_.pop_front();
    running_.push_back(h);
    prefill_tokens += s.length;
    ++stats_.admissions;
    if (batch_in_flight) ++stats_.refills;
  }
  for (int64_t h : running_) {
    Seq& s = seqs_.at(h);
    items.push_back({h, s.cached, s.length - s.cached, &s.table});
    s.cached = s.length;
  }
  if (!items.empty()) {
    ++stats_.steps;
    stats_.occupancy_sum += static_cast<int64_t>(items.size());
    stats_.peak_blocks = std::max(stats_.peak_blocks, pool_->num_used());
  }
  return items;
}

void BatchScheduler::AppendToken(int64_t handle) { ++seqs_.at(handle).length; }

void BatchScheduler::Finish(int64_t handle) {
  auto it = seqs_.find(handle);
  BATON_CHECK_MSG(it != seqs_.end(), "BatchScheduler::Finish: unknown handle");
  pool_->Free(it->second.table);
  if (auto r = std::find(running_.begin(), running_.end(), handle); r != running_.end()) running_.erase(r);
  if (auto w = std::find(waiting_.begin(), waiting_.end(), handle); w != waiting_.end()) waiting_.erase(w);
  seqs_.erase(it);
  ++stats_.finished;
}

}  // namespace baton
