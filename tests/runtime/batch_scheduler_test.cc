// Continuous batching without a model: a toy driver runs the scheduler's
// plans (each item yields one token; a sequence stops at its cap) and the
// tests count what matters — slots refilled as soon as they free, the batch
// full while work waits, preemptions when blocks run out with every request
// still finishing at its full length, the prefill budget, and the free list
// and the running sequences' blocks always partitioning the pool.
#include "runtime/batch_scheduler.h"

#include <map>
#include <set>

#include "gtest/gtest.h"

namespace baton {
namespace {

struct DriveResult {
  std::map<int64_t, int64_t> final_length;  // handle -> tokens when finished
  std::vector<int64_t> batch_sizes;
  int64_t recomputed_tokens = 0;
};

// Drives `s` to completion; caps[h] is each handle's cap from Add.
DriveResult Drive(BatchScheduler& s, KvBlockPool& pool, std::map<int64_t, int64_t> caps, std::map<int64_t, int64_t> length) {
  DriveResult run;
  const std::map<int64_t, int64_t> prompt = length;
  for (int guard = 0; !s.idle() && guard < 10000; ++guard) {
    const std::vector<BatchScheduler::Item> items = s.Schedule();
    EXPECT_FALSE(items.empty());
    run.batch_sizes.push_back(static_cast<int64_t>(items.size()));
    int64_t held = 0;
    std::set<int32_t> distinct;
    for (const auto& it : items) {
      held += static_cast<int64_t>(it.table->size());
      distinct.insert(it.table->begin(), it.table->end());
      EXPECT_EQ(it.start + it.count, length[it.handle]) << "handle " << it.handle;
      EXPECT_GE(static_cast<int64_t>(it.table->size()) * 4, length[it.handle]);
      if (it.start == 0 && it.count > prompt.at(it.handle)) {  // a recompute: prompt + generated
        run.recomputed_tokens += it.count;
      }
    }
    EXPECT_EQ(held, static_cast<int64_t>(distinct.size()));  // no block in two tables
    EXPECT_EQ(held + pool.num_free(), pool.num_blocks());    // nothing leaked
    for (const auto& it : items) {
      if (++length[it.handle] >= caps.at(it.handle)) {
        run.final_length[it.handle] = length[it.handle];
        s.Finish(it.handle);
      } else {
        s.AppendToken(it.handle);
      }
    }
  }
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(pool.num_free(), pool.num_blocks());
  return run;
}

TEST(BatchScheduler, FreedSlotsAreRefilledAtTheNextStep) {
  KvBlockPool pool(100);
  BatchScheduler s({.max_batch = 2, .max_prefill_tokens = 1000}, pool, 4);
  std::map<int64_t, int64_t> caps, length;
  const int64_t news[] = {1, 4, 2, 6, 1};
  for (int64_t h = 0; h < 5; ++h) {
    caps[h] = *s.Add(h, 3, 3 + news[h]);
    length[h] = 3;
  }
  const DriveResult run = Drive(s, pool, caps, length);
  EXPECT_EQ(s.stats().admissions, 5);
  EXPECT_EQ(s.stats().refills, 3);  // requests 2, 3 and 4 each joined a running batch
  EXPECT_EQ(s.stats().preemptions, 0);
  // While requests waited the batch was full. Timeline (step: sequences):
  // 1: h0 h1 (h0 done) | 2-3: h1 h2 (h2 done) | 4: h1 h3 (h1 done) |
  // 5: h3 h4 (h4 done) | 6-9: h3 alone.
  ASSERT_EQ(run.batch_sizes, (std::vector<int64_t>{2, 2, 2, 2, 2, 1, 1, 1, 1}));
  for (int64_t h = 0; h < 5; ++h) EXPECT_EQ(run.final_length.at(h), 3 + news[h]);
  EXPECT_EQ(s.stats().finished, 5);
  EXPECT_EQ(s.stats().occupancy_sum, 14);  // 1+4+2+6+1 tokens generated, one per sequence per step
}

TEST(BatchScheduler, PreemptsWhenBlocksRunOutAndStillFinishesEveryRequest) {
  KvBlockPool pool(6);  // 24 tokens; three sequences growing to 16 need 12 blocks
  BatchScheduler s({.max_batch = 8, .max_prefill_tokens = 1000}, pool, 4);
  std::map<int64_t, int64_t> caps, length;
  for (int64_t h = 0; h < 3; ++h) {
    caps[h] = *s.Add(h, 4, 16);
    length[h] = 4;
  }
  const DriveResult run = Drive(s, pool, caps, length);
  EXPECT_GT(s.stats().preemptions, 0);
  EXPECT_GT(run.recomputed_tokens, 0);  // preempted sequences were prefilled again, prompt + generated
  EXPECT_EQ(s.stats().admissions, 3 + s.stats().preemptions);
  for (int64_t h = 0; h < 3; ++h) EXPECT_EQ(run.final_length.at(h), 16);
  EXPECT_LE(s.stats().peak_blocks, 6);
}

TEST(BatchScheduler, RefusesOnlyAPromptLargerThanTheCacheAndCapsGrowth) {
  KvBlockPool pool(3);
  BatchScheduler s({}, pool, 4);
  absl::StatusOr<int64_t> too_long = s.Add(1, 13, 20);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(too_long.status().message()).find("13 tokens but the KV cache holds 12"), std::string::npos);
  absl::StatusOr<int64_t> capped = s.Add(2, 10, 100);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(*capped, 12);  // a sequence alone always fits
  EXPECT_EQ(s.waiting(), 1);
  EXPECT_EQ(s.Add(3, 0, 5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BatchScheduler, PrefillBudgetAdmitsOneLongPromptAtATime) {
  KvBlockPool pool(100);
  BatchScheduler s({.max_batch = 8, .max_prefill_tokens = 10}, pool, 4);
  for (int64_t h = 0; h < 3; ++h) ASSERT_TRUE(s.Add(h, 6, 50).ok());
  EXPECT_EQ(s.Schedule().size(), 1u);  // 6 + 6 > 10: one prefill per step
  for (int64_t h = 0; h < 1; ++h) s.AppendToken(h);
  const auto items = s.Schedule();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].count, 1);  // the decode of 0
  EXPECT_EQ(items[1].count, 6);  // the prefill of 1
  EXPECT_EQ(s.stats().refills, 1);
}

}  // namespace
}  // namespace baton
