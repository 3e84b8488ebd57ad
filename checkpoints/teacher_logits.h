// The teacher's top-k logits on disk, for offline distillation: `baton
// distill --dump-teacher` runs the teacher once over the training split and
// writes them; training then reads them instead of running the teacher.
// Rows are aligned with the indexed dataset through the sampler's packing
// (runtime/sampler.h): training sample i is stream tokens [i·T, i·T + T],
// and row i·T + t holds the teacher's prediction at its token t. Sample ids
// do not depend on the seed (only their order does), so one dump serves
// every seed with the same data.path, train.seq_len and data.val_fraction.
// Layout of DIR:
//   DIR/index.json          the meta below + the shard names; written last
//   DIR/shard_00000.h5      samples [0, S): datasets values (S·T, k) f32,
//   DIR/shard_00001.h5      indices (S·T, k) i32, rest_lse (S·T) f32 ...
// Each shard is written as NAME.tmp and renamed when complete; a dump
// without index.json is unfinished and is refused by the reader, and a
// writer destroyed before Finish removes its temporary file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/distill_offline.h"

namespace baton {

struct TeacherLogitsMeta {
  int64_t topk = 0;                // k values per token
  double temperature = 1.0;        // rest_lse = log Σ_rest exp(logit/T) at this T
  int64_t vocab_size = 0;          // the teacher's (= the student's) vocabulary
  int64_t seq_len = 0;             // T: rows per sample
  int64_t num_samples = 0;         // training samples [0, num_samples) covered
  int64_t samples_per_shard = 4096;
  std::string dataset;             // the data.path prefix the samples come from
  int64_t dataset_tokens = 0;      // tokens in that dataset (identity check)
  double val_fraction = 0;         // the data.val_fraction that split it
  bool operator==(const TeacherLogitsMeta&) const = default;
};

// OK when `stored` serves a job described by `want` (topk, temperature,
// vocab_size, seq_len, dataset_tokens, val_fraction equal; num_samples at
// least want's). Else one line naming the key and both values.
absl::Status CheckTeacherLogitsFit(const TeacherLogitsMeta& stored, const TeacherLogitsMeta& want,
                                   const std::string& dir);

class TeacherLogitsWriter {
 public:
  // AlreadyExists when DIR already holds a finished dump (index.json).
  static absl::StatusOr<std::unique_ptr<TeacherLogitsWriter>> Create(const std::string& dir,
                                                                     const TeacherLogitsMeta& meta);
  ~TeacherLogitsWriter();

  // The rows of the next samples in id order: values (c·T, k) f32, indices
  // (c·T, k) i32, rest_lse (c·T) f32, CPU; c >= 1 samples, possibly
  // spanning shards. InvalidArgument past num_samples or on bad shapes.
  absl::Status Append(const Tensor& values, const Tensor& indices, const Tensor& rest_lse);
  // After all num_samples: closes the last shard and writes index.json.
  absl::Status Finish();
  int64_t samples_written() const { return written_; }

 private:
  struct Shard;
  TeacherLogitsWriter() = default;
  absl::Status OpenShard(int64_t index);
  absl::Status CloseShard();

  std::string dir_;
  TeacherLogitsMeta meta_;
  int64_t written_ = 0;
  std::unique_ptr<Shard> shard_;  // the one being written
  std::vector<std::string> shard_names_;
  bool finished_ = false;
};

class TeacherLogitsReader {
 public:
  // NotFound when DIR has no index.json (no dump, or an unfinished one).
  static absl::StatusOr<std::unique_ptr<TeacherLogitsReader>> Open(const std::string& dir);
  ~TeacherLogitsReader();

  const TeacherLogitsMeta& meta() const { return meta_; }
  // The rows of training samples `ids` (any order), as OfflineDistillLoss
  // takes them: (ids·T, k) f32 values, i32 indices, (ids·T) f32 rest_lse.
  absl::StatusOr<TeacherTopK> Read(absl::Span<const int64_t> ids) const;

 private:
  struct Files;
  TeacherLogitsReader() = default;
  std::string dir_;
  TeacherLogitsMeta meta_;
  std::unique_ptr<Files> files_;
};

}  // namespace baton
