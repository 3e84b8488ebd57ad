// Continuous batching as pure logic (no model, no memory of its own): which
// sequences run in the next step and which KV-cache blocks they hold. Each
// step decodes one token of every running sequence and prefills newly
// admitted ones in the same call; a sequence that finishes frees its slot
// and blocks, and the next step admits waiting requests into them, so the
// batch stays full while there is work. When a running sequence needs a new
// block and none is free, the most recently admitted sequence is preempted:
// its blocks are freed and it waits at the head of the queue, to be
// recomputed (prompt + tokens so far, one prefill) when blocks come back —
// vLLM's recompute preemption. No request fails for lack of cache: a prompt
// must fit the whole cache (else Add refuses it), and a sequence's growth
// is capped at the cache's capacity, so a sequence alone always fits.
// The driver: Add requests; loop { Schedule(); run the items; for each,
// AppendToken or Finish }. Invariant: the blocks of the running sequences
// and the free list partition the pool.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/kv_cache.h"

namespace baton {

struct SchedulerConfig {
  int max_batch = 64;                 // sequences per step (slots); >= 1
  int64_t max_prefill_tokens = 4096;  // prompt tokens prefilled per step; a longer prompt runs alone
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t admissions = 0;   // sequences admitted (recomputes included)
  int64_t refills = 0;      // admissions into a batch already running (continuous batching)
  int64_t preemptions = 0;  // sequences evicted to free blocks
  int64_t finished = 0;
  int64_t occupancy_sum = 0;  // Σ over steps of sequences in the step
  int64_t peak_blocks = 0;    // most blocks in use after a Schedule
};

class BatchScheduler {
 public:
  // One sequence's part of a step: compute positions [start, start + count)
  // (a prefill: count > 1 or start == 0; a decode: count == 1) with `table`.
  struct Item {
    int64_t handle;
    int64_t start, count;
    const std::vector<int32_t>* table;  // valid until the next Schedule/Finish
  };

  BatchScheduler(const SchedulerConfig& config, KvBlockPool& pool, int64_t block_size);

  // Queues sequence `handle` (the caller's id, unique among live ones) with
  // `prompt_tokens` tokens that may grow to `max_total` tokens. Returns the
  // cap it will grow to: max_total, lowered to what the cache holds.
  // InvalidArgument when the prompt alone does not fit the cache.
  absl::StatusOr<int64_t> Add(int64_t handle, int64_t prompt_tokens, int64_t max_total);
  // The next step (empty when nothing is left). Blocks are taken here.
  std::vector<Item> Schedule();
  // After a step: the sequence got one more token (its KV is computed in
  // the next step), or it is done and its blocks return to the pool.
  void AppendToken(int64_t handle);
  void Finish(int64_t handle);

  bool idle() const { return running_.empty() && waiting_.empty(); }
  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  const SchedulerStats& stats() const { return stats_; }

 private:
  struct Seq {
    int64_t length = 0;  // tokens known: prompt + generated
    int64_t cached = 0;  // tokens whose K/V are in the cache
    std::vector<int32_t> table;
  };
  bool GrowOrPreempt(int64_t handle);  // false if `handle` itself was preempted
  void Preempt(int64_t handle);

  SchedulerConfig config_;
  KvBlockPool* pool_;
  int64_t block_size_;
  std::unordered_map<int64_t, Seq> seqs_;
  std::vector<int64_t> running_;  // admission order
  std::deque<int64_t> waiting_;   // FIFO; preempted sequences go to the front
  SchedulerStats stats_;
};

}  // namespace baton
