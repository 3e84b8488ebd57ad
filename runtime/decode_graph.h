// CUDA graphs for the decode step. A decode step of a small model is a few
// hundred short kernels whose host-side launch cost (op-table dispatch,
// allocation, cuBLASLt plan lookup) exceeds their GPU time, so the GPU idles
// between them. A captured graph replays the whole step in one launch. A
// graph bakes in its shapes and pointers, so the step is padded to a bucket
// (rows: a power of two; block-table width: a power of two), its integers
// (tokens, tables, row_seq, row_pos, logit rows) live in one fixed device
// buffer per bucket, refreshed by one async copy before each replay, and its
// activations come from an arena that lives as long as the graphs. Padding
// rows have row_pos -1: the paged kernels skip them (kernels/cuda/paged_attention.h).
// The first step of a bucket runs eagerly on the padded inputs (plans and
// autotuning happen outside the capture); the second captures; later ones
// replay. A bucket whose capture fails runs eagerly from then on.
// The host layout (DecodeGraphBucket, PackDecodeGraphInputs) is plain C++ and
// tested on the CPU; DecodeGraphs itself needs CUDA.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/paged_attention.h"
#include "runtime/model_decode.h"
#include "runtime/tensor.h"

namespace baton {

// The smallest power of two >= n (n >= 1).
int64_t DecodeGraphBucket(int64_t n);

// Where each array sits in a bucket's packed integer buffer of (rows, width).
struct DecodeGraphLayout {
  int64_t rows = 0, width = 0;
  int64_t tokens() const { return 0; }
  int64_t tables() const { return rows; }               // (rows, width): sequence s at row s
  int64_t row_seq() const { return rows + rows * width; }
  int64_t row_pos() const { return row_seq() + rows; }
  int64_t logit_rows() const { return row_pos() + rows; }
  int64_t size() const { return logit_rows() + rows; }
};

// The bucket of a batch, or rows == 0 when it does not fit max_rows (its
// rows, sequences or logit rows exceed it).
DecodeGraphLayout DecodeGraphLayoutFor(const DecodeBatch& b, int64_t max_rows);
// b's integers in `layout`, padded: token 0, row_seq 0, row_pos -1, tables
// -1, logit row 0 (the padded logit rows are computed and never returned).
std::vector<int32_t> PackDecodeGraphInputs(const DecodeBatch& b, const DecodeGraphLayout& layout);

#ifdef BATON_HAVE_CUDA
// Runs one padded step: tokens (rows) and rows (device pointers into the
// packed buffer), logit_rows (rows) on the device; returns (rows, V) logits,
// written into *logits_out when it is defined, else allocated and stored
// there (null: allocated). Graphs of one row count share their logits.
using DecodeGraphBody = std::function<absl::StatusOr<Tensor>(const Tensor& tokens, const cpu::PagedRows& rows,
                                                             const int32_t* logit_rows, Allocator* alloc,
                                                             Tensor* logits_out)>;

class DecodeGraphs {
 public:
  // max_rows: the largest bucket (bigger batches, e.g. long prefills, run eagerly).
  DecodeGraphs(int64_t max_rows, int64_t block_size);
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  bool Fits(const DecodeBatch& b) const { return DecodeGraphLayoutFor(b, max_rows_).rows > 0; }
  // The logits of b.logit_rows: a view valid until the next Forward.
  absl::StatusOr<Tensor> Forward(const DecodeBatch& b, const DecodeGraphBody& body);
  int64_t captured() const;  // graphs captured so far (a test's witness)
  // Buckets whose capture or replay failed (they run eagerly since), and why.
  int64_t failures() const { return failures_; }
  const absl::Status& last_failure() const { return last_failure_; }

 private:
  struct Entry;
  absl::Status Capture(Entry& e, const DecodeGraphBody& body);

  int64_t max_rows_, block_size_;
  std::unique_ptr<Allocator> arena_;  // destroyed last: the others hold its tensors
  std::map<int64_t, Tensor> outputs_;  // rows -> the logits of that bucket's graphs (one live at a time)
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Entry>> entries_;
  void* own_stream_ = nullptr;  // cudaStream_t, when the caller's stream is the legacy default
  int64_t failures_ = 0;
  absl::Status last_failure_;
};
#endif

}  // namespace baton
