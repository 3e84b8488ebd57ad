// The exactly-once tiling check of a distributed write (see shard_tiling.h).
#include "checkpoints/shard_tiling.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "checkpoints/h5.h"

namespace baton {
namespace {

// The writers of one tensor, sorted by offset, cover it exactly once.
absl::Status CheckCover(std::vector<ShardEntry>& writers, const Shape& full) {
  const ShardEntry& w0 = writers[0];
  for (const ShardEntry& e : writers) {
    if (&e == &w0) continue;
    if (e.dim < 0 || w0.dim < 0) {
      return absl::InvalidArgumentError(absl::StrCat("written more than once (overlap): ranks ", w0.rank, " and ",
                                                     e.rank, " both write it whole or in part"));
    }
    if (e.dim != w0.dim) {
      return absl::InvalidArgumentError(absl::StrCat("ranks ", w0.rank, " and ", e.rank,
                                                     " write slices along different dims (", w0.dim, " and ", e.dim,
                                                     ")"));
    }
  }
  if (w0.dim < 0) return absl::OkStatus();
  const int dim = w0.dim;
  std::stable_sort(writers.begin(), writers.end(),
                   [](const ShardEntry& a, const ShardEntry& b) { return a.offset < b.offset; });
  int64_t at = 0;
  for (const ShardEntry& e : writers) {
    if (e.offset != at) {
      return absl::InvalidArgumentError(absl::StrCat(e.offset < at ? "slices overlap" : "not covered: slices leave a gap",
                                                     " at ", std::min(at, e.offset), " along dim ", dim, " (rank ",
                                                     e.rank, ")"));
    }
    at += e.local[dim];
  }
  if (at != full[dim]) {
    return absl::InvalidArgumentError(
        absl::StrCat("not covered: slices cover ", at, " of ", full[dim], " along dim ", dim));
  }
  return absl::OkStatus();
}

// The plan of one tensor from everything every rank holds of it.
absl::StatusOr<TensorPlan> PlanTensor(const std::string& name, const std::vector<ShardEntry>& list) {
  BATON_RETURN_IF_ERROR(CheckName(name));
  const ShardEntry& first = list[0];
  TensorPlan plan{first.dtype, first.full, {}, 0};
  for (const ShardEntry& e : list) {
    if (e.full != first.full || e.dtype != first.dtype) {
      return absl::InvalidArgumentError(absl::StrCat("ranks ", first.rank, " and ", e.rank,
                                                     " disagree on its shape or dtype (", ShapeString(first.full), " ",
                                                     DTypeName(first.dtype), " vs ", ShapeString(e.full), " ",
                                                     DTypeName(e.dtype), ")"));
    }
    if (std::string p = SliceProblem(e.full, e.local, e.dim, e.offset); !p.empty())
      return absl::InvalidArgumentError(absl::StrCat("rank ", e.rank, "'s ", p));
    if (e.write) plan.writers.push_back(e);
  }
  if (plan.writers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("not covered: no rank writes it (", list.size(),
                                                   " replica(s) with write = false, e.g. rank ", first.rank, ")"));
  }
  BATON_RETURN_IF_ERROR(CheckCover(plan.writers, plan.full));
  std::map<int, int> per_rank;
  for (const ShardEntry& e : plan.writers) plan.rounds = std::max(plan.rounds, ++per_rank[e.rank]);
  return plan;
}

}  // namespace

std::string SliceProblem(const Shape& full, const Shape& local, int dim, int64_t offset) {
  const int rank = static_cast<int>(full.size());
  if (dim < -1 || dim >= rank) return absl::StrCat("split along dim ", dim, " of a ", rank, "-dim tensor");
  bool fits = local.size() == full.size();
  for (int i = 0; fits && i < rank; ++i) fits = i == dim || local[i] == full[i];
  if (fits && dim >= 0) fits = offset >= 0 && offset + local[dim] <= full[dim];
  if (fits) return "";
  return absl::StrCat("slice ", ShapeString(local), " at offset ", offset, " along dim ", dim, " does not fit ",
                      ShapeString(full));
}

absl::StatusOr<TensorPlans> TileShards(const std::vector<ShardEntry>& entries, const std::string& path) {
  std::map<std::string, std::vector<ShardEntry>> by_name;
  for (const ShardEntry& e : entries) by_name[e.name].push_back(e);
  TensorPlans plans;
  for (const auto& [name, list] : by_name) {
    absl::StatusOr<TensorPlan> plan = PlanTensor(name, list);
    if (!plan.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", path, ": tensor ", name, ": ", plan.status().message()));
    }
    plans.emplace(name, *std::move(plan));
  }
  return plans;
}

void SliceBlock(const Shape& full, const Shape& local, int dim, int64_t offset, Shape* start, Shape* count) {
  *start = Shape(full.size(), 0);
  *count = local;
  if (dim >= 0) (*start)[dim] = offset;
}

}  // namespace baton
