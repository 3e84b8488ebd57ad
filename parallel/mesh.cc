// The dp × pp × tp mesh (see mesh.h for the rank order).
#include "parallel/mesh.h"

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace baton {

const char* MeshAxisName(MeshAxis axis) {
  switch (axis) {
    case MeshAxis::kDp: return "dp";
    case MeshAxis::kPp: return "pp";
    case MeshAxis::kTp: return "tp";
  }
  return "?";
}

absl::StatusOr<Mesh> Mesh::Create(MeshShape shape, int world_size, int rank) {
  for (MeshAxis axis : {MeshAxis::kDp, MeshAxis::kPp, MeshAxis::kTp}) {
    int degree = axis == MeshAxis::kDp ? shape.dp : axis == MeshAxis::kPp ? shape.pp : shape.tp;
    if (degree < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("parallel.", MeshAxisName(axis), "=", degree, " must be at least 1"));
    }
  }
  // Products of three ints can overflow int; compare in 64 bits.
  const int64_t product = int64_t{shape.dp} * shape.pp * shape.tp;
  if (product != world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel.dp=", shape.dp, " × parallel.pp=", shape.pp, " × parallel.tp=", shape.tp,
        " = ", product, " ranks, but the job has ", world_size,
        " (make the product equal the number of ranks started by mpiexec/srun)"));
  }
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside the world of ", world_size, " ranks"));
  }
  return Mesh(shape, rank);
}

Mesh::Mesh(MeshShape shape, int rank) : shape_(shape), rank_(rank), coord_(CoordOf(rank)) {}

int Mesh::Size(MeshAxis axis) const {
  switch (axis) {
    case MeshAxis::kDp: return shape_.dp;
    case MeshAxis::kPp: return shape_.pp;
    case MeshAxis::kTp: return shape_.tp;
  }
  return 0;
}

int Mesh::Coord(MeshAxis axis) const {
  switch (axis) {
    case MeshAxis::kDp: return coord_.dp;
    case MeshAxis::kPp: return coord_.pp;
    case MeshAxis::kTp: return coord_.tp;
  }
  return 0;
}

int Mesh::RankOf(int dp_rank, int pp_rank, int tp_rank) const {
  BATON_CHECK(dp_rank >= 0 && dp_rank < shape_.dp);
  BATON_CHECK(pp_rank >= 0 && pp_rank < shape_.pp);
  BATON_CHECK(tp_rank >= 0 && tp_rank < shape_.tp);
  return tp_rank + shape_.tp * (dp_rank + shape_.dp * pp_rank);
}

MeshCoord Mesh::CoordOf(int world_rank) const {
  BATON_CHECK(world_rank >= 0 && world_rank < shape_.world());
  MeshCoord c;
  c.tp = world_rank % shape_.tp;
  c.dp = (world_rank / shape_.tp) % shape_.dp;
  c.pp = world_rank / (shape_.tp * shape_.dp);
  return c;
}

std::vector<int> Mesh::GroupOf(MeshAxis axis, int world_rank) const {
  MeshCoord c = CoordOf(world_rank);
  std::vector<int> ranks;
  ranks.reserve(Size(axis));
  for (int i = 0; i < Size(axis); ++i) {
    MeshCoord m = c;
    (axis == MeshAxis::kDp ? m.dp : axis == MeshAxis::kPp ? m.pp : m.tp) = i;
    ranks.push_back(RankOf(m));
  }
  return ranks;
}

int Mesh::GroupId(MeshAxis axis) const {
  // Flatten the two coordinates that stay fixed along the axis.
  switch (axis) {
    case MeshAxis::kTp: return coord_.dp + shape_.dp * coord_.pp;
    case MeshAxis::kDp: return coord_.tp + shape_.tp * coord_.pp;
    case MeshAxis::kPp: return coord_.tp + shape_.tp * coord_.dp;
  }
  return 0;
}

std::string Mesh::DebugString() const {
  return absl::StrCat("rank ", rank_, " of ", world_size(), ": dp=", coord_.dp, " pp=", coord_.pp,
                      " tp=", coord_.tp, " (dp=", shape_.dp, " pp=", shape_.pp, " tp=", shape_.tp,
                      ")");
}

}  // namespace baton
