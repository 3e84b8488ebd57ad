// UCX tag send/recv between ucp workers (see ucx_p2p.h for the tag layout
// and the shutdown order).
#include "parallel/ucx_p2p.h"

#include <sched.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "parallel/mpi_check.h"

#define BATON_CHECK_UCX(x) BATON_RETURN_IF_ERROR(::baton::FromUcx((x), #x, __FILE__, __LINE__))

namespace baton {
namespace {

constexpr int kCommIdBits = 12;
constexpr int kSenderBits = 20;
constexpr uint64_t kFullMask = ~uint64_t{0};
// An unclosed world gives its endpoints this long to flush (a dead peer
// must not hang the destructor).
constexpr auto kDestructorFlushLimit = std::chrono::seconds(5);

bool MpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

class UcxRequest final : public CommRequest {
 public:
  UcxRequest(std::shared_ptr<UcxWorld> ucx, Tensor buffer, bool is_recv, int peer, int tag)
      : ucx_(std::move(ucx)), buffer_(std::move(buffer)), is_recv_(is_recv), peer_(peer),
        tag_(tag) {}

  // Set once, right after the ucp call; null: a send completed at the call.
  void set_request(void* request) { request_ = request; }

  ~UcxRequest() override {
    if (request_ == nullptr || ucx_->worker() == nullptr) return;  // closed world: nothing to drive
    // Unwaited (an error path): a receive is cancelled; a send is driven to
    // completion so UCX never reads freed memory.
    if (is_recv_) ucp_request_cancel(ucx_->worker(), request_);
    while (ucp_request_check_status(request_) == UCS_INPROGRESS) ucx_->Progress();
    ucp_request_free(request_);
  }

  // Drives the worker once: host code polls this between compute so that
  // a rendezvous transfer advances before Wait (p2p_mpitest checks it).
  bool Test() override {
    if (request_ == nullptr) return true;
    if (ucx_->worker() == nullptr) return false;
    ucx_->Progress();
    return ucp_request_check_status(request_) != UCS_INPROGRESS;
  }

  absl::Status Wait() override {
    ucs_status_t status = UCS_OK;
    if (request_ != nullptr && ucx_->worker() == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(Describe(), ": the UCX world was closed"));
    }
    if (request_ != nullptr) {
      for (;;) {
        status = is_recv_ ? ucp_tag_recv_request_test(request_, &info_)
                          : ucp_request_check_status(request_);
        if (status != UCS_INPROGRESS) break;
        ucx_->Progress();
      }
      ucp_request_free(request_);
      request_ = nullptr;
    } else if (done_) {
      return absl::OkStatus();
    }
    done_ = true;
    if (status == UCS_ERR_MESSAGE_TRUNCATED) {
      return absl::InvalidArgumentError(absl::StrCat(
          Describe(), ": the message is longer than the buffer's ", buffer_.nbytes(),
          " bytes (sender and receiver disagree on the shape)"));
    }
    if (status != UCS_OK) {
      absl::Status st = FromUcx(status, is_recv_ ? "ucp_tag_recv_nbx" : "ucp_tag_send_nbx",
                                __FILE__, __LINE__);
      return absl::Status(st.code(), absl::StrCat(Describe(), ": ", st.message()));
    }
    if (is_recv_ && info_.length != buffer_.nbytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Describe(), ": received ", info_.length, " bytes, but the buffer holds ",
                       buffer_.nbytes(), " (sender and receiver disagree on the shape)"));
    }
    return absl::OkStatus();
  }

 private:
  std::string Describe() const {
    return absl::StrCat("ucx ", is_recv_ ? "recv from rank " : "send to rank ", peer_, " tag ",
                        tag_, " ", buffer_.DebugString());
  }

  std::shared_ptr<UcxWorld> ucx_;  // the worker outlives its requests
  void* request_ = nullptr;        // null: completed at the call
  Tensor buffer_;
  bool is_recv_;
  int peer_, tag_;
  ucp_tag_recv_info_t info_{};
  bool done_ = false;
};

}  // namespace

absl::Status FromUcx(ucs_status_t status, const char* expr, const char* file, int line) {
  if (status == UCS_OK) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (status) {
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_MESSAGE_TRUNCATED:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_REJECTED:
      code = absl::StatusCode::kUnavailable;
      break;
    case UCS_ERR_TIMED_OUT:
      code = absl::StatusCode::kDeadlineExceeded;
      break;
    case UCS_ERR_CANCELED:
      code = absl::StatusCode::kCancelled;
      break;
    default:
      break;
  }
  return absl::Status(code, absl::StrCat(ucs_status_string(status), " (UCX status ",
                                         static_cast<int>(status), ") in ", expr, " at ", file,
                                         ":", line));
}

// ---- UcxWorld

absl::StatusOr<std::shared_ptr<UcxWorld>> UcxWorld::Create(MPI_Comm world) {
  std::shared_ptr<UcxWorld> ucx(new UcxWorld());
  BATON_CHECK_MPI(MPI_Comm_dup(world, &ucx->comm_));
  BATON_CHECK_MPI(MPI_Comm_set_errhandler(ucx->comm_, MPI_ERRORS_RETURN));
  int size = 0;
  BATON_CHECK_MPI(MPI_Comm_rank(ucx->comm_, &ucx->world_rank_));
  BATON_CHECK_MPI(MPI_Comm_size(ucx->comm_, &size));
  if (size >= (1 << kSenderBits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ucx: ", size, " ranks exceed the tag's ", kSenderBits, "-bit sender field"));
  }

  ucp_config_t* config = nullptr;
  BATON_CHECK_UCX(ucp_config_read(nullptr, nullptr, &config));
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  ucs_status_t init = ucp_init(&params, config, &ucx->context_);
  ucp_config_release(config);
  BATON_CHECK_UCX(init);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  BATON_CHECK_UCX(ucp_worker_create(ucx->context_, &worker_params, &ucx->worker_));

  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS;
  BATON_CHECK_UCX(ucp_worker_query(ucx->worker_, &attr));
  std::vector<char> mine(reinterpret_cast<char*>(attr.address),
                         reinterpret_cast<char*>(attr.address) + attr.address_length);
  ucp_worker_release_address(ucx->worker_, attr.address);

  // Address sizes first, then the addresses themselves.
  int my_len = static_cast<int>(mine.size());
  std::vector<int> lens(size), displs(size);
  BATON_CHECK_MPI(MPI_Allgather(&my_len, 1, MPI_INT, lens.data(), 1, MPI_INT, ucx->comm_));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::vector<char> all(total);
  BATON_CHECK_MPI(MPI_Allgatherv(mine.data(), my_len, MPI_BYTE, all.data(), lens.data(),
                                 displs.data(), MPI_BYTE, ucx->comm_));
  ucx->addresses_.resize(size);
  for (int r = 0; r < size; ++r) {
    ucx->addresses_[r].assign(all.begin() + displs[r], all.begin() + displs[r] + lens[r]);
  }
  ucx->endpoints_.assign(size, nullptr);
  return ucx;
}

absl::StatusOr<ucp_ep_h> UcxWorld::Endpoint(int world_rank) {
  BATON_CHECK(world_rank >= 0 && world_rank < world_size());
  if (worker_ == nullptr) return absl::FailedPreconditionError("ucx: the world is closed");
  if (endpoints_[world_rank] == nullptr) {
    ucp_ep_params_t params{};
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    params.address = reinterpret_cast<const ucp_address_t*>(addresses_[world_rank].data());
    absl::Status st = FromUcx(ucp_ep_create(worker_, &params, &endpoints_[world_rank]),
                              "ucp_ep_create", __FILE__, __LINE__);
    if (!st.ok()) {
      endpoints_[world_rank] = nullptr;
      return absl::Status(st.code(),
                          absl::StrCat("ucx: endpoint to rank ", world_rank, ": ", st.message()));
    }
  }
  return endpoints_[world_rank];
}

void UcxWorld::Progress() {
  if (ucp_worker_progress(worker_) == 0) sched_yield();
}

absl::Status UcxWorld::Close() {
  if (worker_ == nullptr) return absl::OkStatus();
  BATON_CHECK_MPI(MPI_Barrier(comm_));
  Shutdown(/*collective=*/true);
  return absl::OkStatus();
}

void UcxWorld::Shutdown(bool collective) {
  if (worker_ != nullptr) {
    std::vector<void*> closing;
    for (ucp_ep_h& ep : endpoints_) {
      if (ep == nullptr) continue;
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      param.flags = 0;  // flush mode: outstanding sends are delivered first
      ucs_status_ptr_t req = ucp_ep_close_nbx(ep, &param);
      if (UCS_PTR_IS_PTR(req)) closing.push_back(req);
      ep = nullptr;
    }
    // Keep progressing until our endpoints are closed and, when collective,
    // until every rank's are (a peer's flush may need our worker).
    MPI_Request barrier = MPI_REQUEST_NULL;
    bool barrier_done = !collective;
    const auto deadline = std::chrono::steady_clock::now() + kDestructorFlushLimit;
    for (;;) {
      bool closed = true;
      for (void*& req : closing) {
        if (req == nullptr) continue;
        if (ucp_request_check_status(req) == UCS_INPROGRESS) {
          closed = false;
        } else {
          ucp_request_free(req);
          req = nullptr;
        }
      }
      if (closed && collective && barrier == MPI_REQUEST_NULL && !barrier_done) {
        if (MPI_Ibarrier(comm_, &barrier) != MPI_SUCCESS) barrier_done = true;
      }
      if (barrier != MPI_REQUEST_NULL) {
        int flag = 0;
        if (MPI_Test(&barrier, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || flag) {
          barrier_done = true;
          barrier = MPI_REQUEST_NULL;
        }
      }
      if (closed && barrier_done) break;
      if (!collective && std::chrono::steady_clock::now() > deadline) break;  // leak, don't hang
      Progress();
    }
    ucp_worker_destroy(worker_);
    worker_ = nullptr;
  }
  if (context_ != nullptr) {
    ucp_cleanup(context_);
    context_ = nullptr;
  }
}

UcxWorld::~UcxWorld() {
  Shutdown(/*collective=*/false);
  if (comm_ != MPI_COMM_NULL && !MpiFinalized()) MPI_Comm_free(&comm_);
}

// ---- UcxP2pCommunicator

absl::StatusOr<std::unique_ptr<UcxP2pCommunicator>> UcxP2pCommunicator::Create(
    std::shared_ptr<UcxWorld> ucx, std::unique_ptr<MpiCommunicator> collectives) {
  BATON_CHECK(ucx != nullptr && collectives != nullptr);
  MPI_Comm group_comm = collectives->comm();
  const int n = collectives->size();
  // Group ranks -> ranks of the UCX world, whose endpoints we use.
  MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
  BATON_CHECK_MPI(MPI_Comm_group(group_comm, &group));
  BATON_CHECK_MPI(MPI_Comm_group(ucx->comm(), &world));
  std::vector<int> group_ranks(n), world_ranks(n);
  for (int i = 0; i < n; ++i) group_ranks[i] = i;
  int code = MPI_Group_translate_ranks(group, n, group_ranks.data(), world, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  BATON_CHECK_MPI(code);
  for (int i = 0; i < n; ++i) {
    if (world_ranks[i] == MPI_UNDEFINED) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ucx: rank ", i, " of group ", collectives->name(), " is not in the UCX world"));
    }
  }
  // An id above every id any member has used: two communicators that share
  // a pair of ranks never share an id.
  int id = 0;
  BATON_CHECK_MPI(MPI_Allreduce(&ucx->next_comm_id_, &id, 1, MPI_INT, MPI_MAX, group_comm));
  if (id >= (1 << kCommIdBits)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "ucx: more than ", 1 << kCommIdBits, " UCX communicators created in this process"));
  }
  ucx->next_comm_id_ = id + 1;
  return std::unique_ptr<UcxP2pCommunicator>(new UcxP2pCommunicator(
      std::move(ucx), std::move(collectives), std::move(world_ranks), id));
}

UcxP2pCommunicator::UcxP2pCommunicator(std::shared_ptr<UcxWorld> ucx,
                                       std::unique_ptr<MpiCommunicator> collectives,
                                       std::vector<int> world_ranks, int comm_id)
    : ucx_(std::move(ucx)), collectives_(std::move(collectives)),
      world_ranks_(std::move(world_ranks)), comm_id_(comm_id) {}

uint64_t UcxP2pCommunicator::TagOf(int sender, int tag) const {
  return (uint64_t(comm_id_) << (64 - kCommIdBits)) | (uint64_t(sender) << 32) | uint32_t(tag);
}

absl::StatusOr<CommRequestPtr> UcxP2pCommunicator::ISend(const Tensor& t, int peer, int tag) {
  BATON_RETURN_IF_ERROR(CheckCommTensor("ucx isend", t, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckPeer("ucx isend", *this, peer, tag));
  BATON_ASSIGN_OR_RETURN(ucp_ep_h ep, ucx_->Endpoint(world_ranks_[peer]));
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
  param.datatype = ucp_dt_make_contig(1);
  ucs_status_ptr_t req = ucp_tag_send_nbx(ep, t.raw(), t.nbytes(), TagOf(rank(), tag), &param);
  if (UCS_PTR_IS_ERR(req)) {
    absl::Status st = FromUcx(UCS_PTR_STATUS(req), "ucp_tag_send_nbx", __FILE__, __LINE__);
    return absl::Status(st.code(), absl::StrCat("ucx send to rank ", peer, " tag ", tag, ": ",
                                                st.message()));
  }
  auto request = std::make_unique<UcxRequest>(ucx_, t, /*is_recv=*/false, peer, tag);
  request->set_request(req);
  return CommRequestPtr(std::move(request));
}

absl::StatusOr<CommRequestPtr> UcxP2pCommunicator::IRecv(Tensor& t, int peer, int tag) {
  BATON_RETURN_IF_ERROR(CheckCommTensor("ucx irecv", t, Device::kCpu));
  BATON_RETURN_IF_ERROR(CheckPeer("ucx irecv", *this, peer, tag));
  if (ucx_->worker() == nullptr) return absl::FailedPreconditionError("ucx: the world is closed");
  auto request = std::make_unique<UcxRequest>(ucx_, t, /*is_recv=*/true, peer, tag);
  ucp_request_param_t param{};
  // UCX 1.13 leaves recv_info unwritten when a receive completes at the
  // call (seen here: length 0), so always take a request and read the
  // length from ucp_tag_recv_request_test.
  param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  param.datatype = ucp_dt_make_contig(1);
  ucs_status_ptr_t req =
      ucp_tag_recv_nbx(ucx_->worker(), t.raw(), t.nbytes(), TagOf(peer, tag), kFullMask, &param);
  if (UCS_PTR_IS_ERR(req)) {
    if (UCS_PTR_STATUS(req) == UCS_ERR_MESSAGE_TRUNCATED) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ucx recv from rank ", peer, " tag ", tag, " ", t.DebugString(),
          ": the message is longer than the buffer's ", t.nbytes(), " bytes"));
    }
    absl::Status st = FromUcx(UCS_PTR_STATUS(req), "ucp_tag_recv_nbx", __FILE__, __LINE__);
    return absl::Status(st.code(), absl::StrCat("ucx recv from rank ", peer, " tag ", tag, ": ",
                                                st.message()));
  }
  BATON_CHECK(req != nullptr);  // NO_IMM_CMPL: always a request
  request->set_request(req);
  return CommRequestPtr(std::move(request));
}

absl::StatusOr<MeshComms> CreateMeshCommsWithUcxPipeline(const Mesh& mesh, MPI_Comm world) {
  BATON_ASSIGN_OR_RETURN(MeshComms comms, CreateMpiMeshComms(mesh, world));
  BATON_ASSIGN_OR_RETURN(std::shared_ptr<UcxWorld> ucx, UcxWorld::Create(world));
  BATON_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> pp_mpi,
                         MpiCommunicator::Create(world, mesh.GroupId(MeshAxis::kPp),
                                                 mesh.pp_rank(), "pp"));
  comms.close = [ucx] { return ucx->Close(); };
  BATON_ASSIGN_OR_RETURN(comms.pp, UcxP2pCommunicator::Create(ucx, std::move(pp_mpi)));
  return comms;
}

}  // namespace baton
