// The device mesh: where this rank sits in dp × pp × tp, and which world
// ranks share each of its groups. A pure function of (shape, world size,
// rank), so every rank computes every other rank's place without talking;
// communicators (parallel/communicator.h) are split along these groups.
//
// Rank order (Megatron's tp-dp-pp, without cp/ep): tp varies fastest, then
// dp, then pp slowest:
//
//     rank = tp_rank + tp · (dp_rank + dp · pp_rank)
//
// so the tp ranks of one layer are neighbours (one node's fast links), a
// dp group strides by tp, and pipeline stages are the furthest apart (their
// traffic is a few activations per micro-batch). Group member lists are in
// axis order: TpGroup()[i] is the world rank with tp_rank == i, so a group
// communicator's rank equals this rank's coordinate on that axis.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace baton {

// Parallel degrees; each ≥ 1 (1 = that kind of parallelism is off).
struct MeshShape {
  int dp = 1;  // data-parallel replicas
  int pp = 1;  // pipeline stages
  int tp = 1;  // tensor-parallel ranks per layer
  int world() const { return dp * pp * tp; }
};

// A rank's coordinates on the three axes.
struct MeshCoord {
  int dp = 0, pp = 0, tp = 0;
  bool operator==(const MeshCoord&) const = default;
};

enum class MeshAxis { kDp, kPp, kTp };
const char* MeshAxisName(MeshAxis axis);  // "dp", "pp", "tp"

class Mesh {
 public:
  // InvalidArgument when a degree is < 1, dp·pp·tp != world_size (the
  // message names the three degrees, their product and the world), or rank
  // is outside [0, world_size).
  static absl::StatusOr<Mesh> Create(MeshShape shape, int world_size, int rank);

  const MeshShape& shape() const { return shape_; }
  int world_size() const { return shape_.world(); }
  int rank() const { return rank_; }
  const MeshCoord& coord() const { return coord_; }
  int dp_rank() const { return coord_.dp; }
  int pp_rank() const { return coord_.pp; }
  int tp_rank() const { return coord_.tp; }

  int Size(MeshAxis axis) const;  // the degree along an axis
  int Coord(MeshAxis axis) const;  // this rank's coordinate along it

  // World rank of a coordinate (each in range; out of range is a bug).
  int RankOf(int dp_rank, int pp_rank, int tp_rank) const;
  int RankOf(const MeshCoord& c) const { return RankOf(c.dp, c.pp, c.tp); }
  MeshCoord CoordOf(int world_rank) const;

  // World ranks of the group through `rank` along `axis` (all other
  // coordinates fixed), in axis order. Default: this rank's group.
  std::vector<int> Group(MeshAxis axis) const { return GroupOf(axis, rank_); }
  std::vector<int> GroupOf(MeshAxis axis, int world_rank) const;
  std::vector<int> TpGroup() const { return Group(MeshAxis::kTp); }
  std::vector<int> DpGroup() const { return Group(MeshAxis::kDp); }
  std::vector<int> PpGroup() const { return Group(MeshAxis::kPp); }

  // An id in [0, world/Size(axis)) that is equal exactly for the ranks of
  // one group along `axis`: the `color` for MPI_Comm_split (key: Coord).
  int GroupId(MeshAxis axis) const;

  bool is_first_stage() const { return coord_.pp == 0; }
  bool is_last_stage() const { return coord_.pp == shape_.pp - 1; }

  std::string DebugString() const;  // "rank 5 of 8: dp=0 pp=1 tp=1 (dp=2 pp=2 tp=2)"

 private:
  Mesh(MeshShape shape, int rank);
  MeshShape shape_;
  int rank_ = 0;
  MeshCoord coord_;
};

}  // namespace baton
