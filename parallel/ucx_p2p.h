// UCX point-to-point for pipeline activations (`parallel.p2p = ucx`):
// host-memory tag send/recv between ucp workers, with the collectives of
// the same group delegated to an MpiCommunicator (UCX is only the
// pipeline transport here).
//
// UcxWorld is the per-process state: one ucp context and one worker,
// every world rank's worker address (exchanged over MPI at creation) and
// one endpoint per peer, made on first use. Any number of
// UcxP2pCommunicators (one per group) share it; a 64-bit UCX tag keeps
// their messages apart:
//
//     bits 63..52  communicator id (agreed over the group at creation)
//     bits 51..32  sender's rank in the group
//     bits 31..0   the caller's tag
//
// and a receive matches all 64 bits. Single-threaded (UCS_THREAD_MODE_SINGLE):
// progress happens inside Wait(), which spins ucp_worker_progress and
// yields the core when there is nothing to do (ranks oversubscribe cores).
// Shutdown: Close() is collective (barrier, flush, close endpoints while
// still progressing, barrier, destroy); the destructor of an unclosed
// world does the same without the barriers.
#pragma once

#include <ucp/api/ucp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"  // <mpi.h> without the C++ bindings

namespace baton {

// UCX status codes as Status (ucs_status_string, the call, file:line).
absl::Status FromUcx(ucs_status_t status, const char* expr, const char* file, int line);

class UcxWorld {
 public:
  // Collective over `world` (duplicated; every rank that will talk over
  // UCX must be in it).
  static absl::StatusOr<std::shared_ptr<UcxWorld>> Create(MPI_Comm world);
  ~UcxWorld();
  UcxWorld(const UcxWorld&) = delete;
  UcxWorld& operator=(const UcxWorld&) = delete;

  // Collective over the world: a barrier, then endpoints flushed and
  // closed while progressing, then a barrier, then the worker destroyed.
  // Every request must be done. Idempotent.
  absl::Status Close();

  MPI_Comm comm() const { return comm_; }
  int world_rank() const { return world_rank_; }
  int world_size() const { return static_cast<int>(addresses_.size()); }
  ucp_worker_h worker() const { return worker_; }

  // The endpoint to a world rank, created on first use.
  absl::StatusOr<ucp_ep_h> Endpoint(int world_rank);
  // One round of progress; yields the core when nothing progressed.
  void Progress();

 private:
  friend class UcxP2pCommunicator;
  UcxWorld() = default;
  void Shutdown(bool collective);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int world_rank_ = 0;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<std::vector<char>> addresses_;  // [world rank] packed worker address
  std::vector<ucp_ep_h> endpoints_;           // [world rank]; null until used
  int next_comm_id_ = 0;
};

class UcxP2pCommunicator final : public Communicator {
 public:
  // Collective over collectives->comm(), whose ranks must all be in
  // ucx->comm(). Send/recv go over `ucx`, the rest over `collectives`.
  static absl::StatusOr<std::unique_ptr<UcxP2pCommunicator>> Create(
      std::shared_ptr<UcxWorld> ucx, std::unique_ptr<MpiCommunicator> collectives);

  int rank() const override { return collectives_->rank(); }
  int size() const override { return collectives_->size(); }
  const char* backend() const override { return "ucx"; }
  int comm_id() const { return comm_id_; }
  UcxWorld& ucx() const { return *ucx_; }  // for Close() at shutdown

  absl::Status AllReduceSum(Tensor& t) override { return collectives_->AllReduceSum(t); }
  absl::StatusOr<CommRequestPtr> IAllReduceSum(Tensor& t) override { return collectives_->IAllReduceSum(t); }
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override {
    return collectives_->ReduceScatterSum(in, out);
  }
  absl::Status AllGather(const Tensor& in, Tensor& out) override {
    return collectives_->AllGather(in, out);
  }
  absl::Status Broadcast(Tensor& t, int root) override { return collectives_->Broadcast(t, root); }
  absl::Status Barrier() override { return collectives_->Barrier(); }
  absl::StatusOr<CommRequestPtr> ISend(const Tensor& t, int peer, int tag) override;
  absl::StatusOr<CommRequestPtr> IRecv(Tensor& t, int peer, int tag) override;

 private:
  UcxP2pCommunicator(std::shared_ptr<UcxWorld> ucx, std::unique_ptr<MpiCommunicator> collectives,
                     std::vector<int> world_ranks, int comm_id);
  uint64_t TagOf(int sender, int tag) const;

  std::shared_ptr<UcxWorld> ucx_;
  std::unique_ptr<MpiCommunicator> collectives_;
  std::vector<int> world_ranks_;  // [group rank] -> rank in ucx->comm()
  int comm_id_;
};

// CreateMpiMeshComms, with the pp group's point-to-point over UCX (its
// collectives stay on MPI). Collective over `world`.
absl::StatusOr<MeshComms> CreateMeshCommsWithUcxPipeline(const Mesh& mesh,
                                                          MPI_Comm world = MPI_COMM_WORLD);

}  // namespace baton
