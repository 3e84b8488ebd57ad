// The MPI backend of Communicator (host buffers): the CPU path for every
// group, and the collectives behind the UCX point-to-point backend. Each
// instance owns one MPI_Comm split from a parent along a mesh group, with
// MPI_ERRORS_RETURN so MPI failures come back as Status (mpi_check.h).
//
// Reductions are deterministic by construction, not by trusting MPI_SUM:
// each rank receives chunk r of every rank's buffer (MPI_Alltoallv), folds
// them left to right in group-rank order 0..n-1 in the tensor's dtype, and
// the folded chunks are all-gathered. Every element is summed once, by one
// rank, in one order, so all ranks hold the same bits on every run (and a
// test can compute the expected bits alone). The cost is the same traffic
// as a ring all-reduce plus n·N/n scratch.
//
// Every wait is a poll with a deadline (parallel/peer_watch.h): collectives
// run as their nonblocking forms, so a dead or stopped peer becomes
// DeadlineExceeded naming it instead of a hang.
#pragma once

// The deprecated MPI C++ bindings warn under -Wextra; baton uses the C API.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/mesh.h"

namespace baton {

class MpiAllReduceRequest;

class MpiCommunicator final : public Communicator {
 public:
  // Collective over `parent`: ranks with equal `color` form one group,
  // ordered by `key`. `name` ("tp", "world") prefixes every error message.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(MPI_Comm parent, int color, int key,
                                                                 std::string name);
  // Collective over `comm`: a private duplicate of it.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Dup(MPI_Comm comm, std::string name);
  ~MpiCommunicator() override;  // frees the MPI_Comm (unless MPI is already finalized)

  MPI_Comm comm() const { return comm_; }
  const std::string& name() const { return name_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }

  absl::Status AllReduceSum(Tensor& t) override;
  absl::StatusOr<CommRequestPtr> IAllReduceSum(Tensor& t) override;
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override;
  absl::Status AllGather(const Tensor& in, Tensor& out) override;
  absl::Status Broadcast(Tensor& t, int root) override;
  absl::Status Barrier() override;
  absl::StatusOr<CommRequestPtr> ISend(const Tensor& t, int peer, int tag) override;
  absl::StatusOr<CommRequestPtr> IRecv(Tensor& t, int peer, int tag) override;

 private:
  MpiCommunicator(MPI_Comm comm, std::string name);
  absl::Status Context(absl::Status st, const char* op) const;  // "tp all_reduce_sum: ..."
  // Waits for a collective's request under the peer watch's deadline.
  absl::Status WaitCollective(MPI_Request* req, const char* op, const char* call) const;

  friend class MpiAllReduceRequest;
  // IAllReduceSum runs in two collectives (all-to-all, then all-gather);
  // MPI needs every rank to start collectives on a communicator in one
  // order, so the all-gathers run on their own duplicate (gather_comm_) and
  // start strictly in the order the all-reduces were started (started_).
  absl::Status EnsureGatherComm();
  void Advance(MpiAllReduceRequest* until);  // until: block up to this one; null: only poll

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm gather_comm_ = MPI_COMM_NULL;
  std::vector<MpiAllReduceRequest*> started_;  // first phase in flight, oldest first
  std::string name_;
  std::string members_;  // "world ranks 0, 2": who a stuck collective waits on
  int rank_ = 0, size_ = 1;
  std::vector<char> scratch_;  // (size, chunk) received chunks; grows, never shrinks
};

// The four communicators of a mesh; tp/dp/pp ranks equal the mesh
// coordinates (tp->rank() == mesh.tp_rank()). world, tp and dp are always
// MPI (typed, so NCCL set-up and collective file I/O reach the MPI_Comm
// without a cast); pp is MPI or another point-to-point transport (UCX).
struct MeshComms {
  std::unique_ptr<MpiCommunicator> world, tp, dp;
  std::unique_ptr<Communicator> pp;
  // Collective shutdown of a transport that needs one (UCX); null: none.
  std::function<absl::Status()> close;

  // Collective over the world; idempotent; OK when there is nothing to close.
  absl::Status Close() { return close ? close() : absl::OkStatus(); }
};

// Collective over `world`, whose size and rank must match the mesh
// (InvalidArgument naming both otherwise).
absl::StatusOr<MeshComms> CreateMpiMeshComms(const Mesh& mesh, MPI_Comm world = MPI_COMM_WORLD);

// The MPI datatype of one element (byte-exact; bf16/f16 travel as 16-bit ints).
MPI_Datatype MpiDatatypeOf(DType dtype);

}  // namespace baton
