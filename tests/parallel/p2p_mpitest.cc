// Multi-rank tests of point-to-point transfers, run for both pipeline
// transports (MPI and UCX): rings over the world and over a mesh's pp
// groups, blocking pairs and self-sends, many non-blocking transfers in
// flight at once, transfers that progress while the host computes (polled
// with Test, checked as an ordering, not a timing), tags and communicators
// kept apart, and receives of the wrong size or to a bad peer coming back
// as a Status instead of a hang.
// Run under mpiexec -n {2,4,8} (tests/CMakeLists.txt).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "parallel/ucx_p2p.h"
#include "tests/parallel/mpi_test_util.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

// The payload a sender (by world rank) puts in message `tag` at index i.
float Value(int sender, int tag, int64_t i) {
  return static_cast<float>(sender * 1000 + tag) + static_cast<float>(i % 977) / 1024.0f;
}

Tensor Payload(int sender, int tag, int64_t n) {
  Tensor t = Tensor::Empty({n}, DType::kF32);
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = Value(sender, tag, i);
  return t;
}

// Index of the first element that is not the sender's payload, or -1.
int64_t FirstWrong(const Tensor& t, int sender, int tag) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.data<float>()[i] != Value(sender, tag, i)) return i;
  }
  return -1;
}

TEST(PayloadCheckerTest, CatchesOneWrongElement) {
  Tensor t = Payload(3, 7, 50);
  EXPECT_EQ(FirstWrong(t, 3, 7), -1);
  EXPECT_EQ(FirstWrong(t, 3, 8), 0);
  t.data<float>()[31] += 1.0f / 1024.0f;
  EXPECT_EQ(FirstWrong(t, 3, 7), 31);
}

class P2pTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::shared_ptr<UcxWorld>> ucx = UcxWorld::Create(MPI_COMM_WORLD);
    ASSERT_TRUE(ucx.ok()) << ucx.status();
    ucx_ = *ucx;
  }
  static void TearDownTestSuite() {
    EXPECT_TRUE(ucx_->Close().ok());
    ucx_.reset();
  }

  // A communicator over the ranks of `parent` with equal `color`, ordered
  // by `key`, whose point-to-point goes over the backend under test.
  static std::unique_ptr<Communicator> Make(int color, int key) {
    absl::StatusOr<std::unique_ptr<MpiCommunicator>> mpi =
        MpiCommunicator::Create(MPI_COMM_WORLD, color, key, "test");
    EXPECT_TRUE(mpi.ok()) << mpi.status();
    if (GetParam() == "mpi") return std::move(*mpi);
    absl::StatusOr<std::unique_ptr<UcxP2pCommunicator>> ucx =
        UcxP2pCommunicator::Create(ucx_, std::move(*mpi));
    EXPECT_TRUE(ucx.ok()) << ucx.status();
    return std::move(*ucx);
  }
  static std::unique_ptr<Communicator> MakeWorld() { return Make(0, WorldRank()); }

  static std::shared_ptr<UcxWorld> ucx_;
};
std::shared_ptr<UcxWorld> P2pTest::ucx_;

// Each rank sends to the next and receives from the previous; `ranks`
// maps group ranks to the world ranks that stamp the payloads.
void Ring(Communicator& c, const std::vector<int>& ranks, int64_t n, int tag) {
  SCOPED_TRACE(absl::StrCat(c.backend(), " ring of ", c.size(), ", ", n, " floats, tag ", tag));
  const int next = (c.rank() + 1) % c.size(), prev = (c.rank() + c.size() - 1) % c.size();
  Tensor out = Payload(ranks[c.rank()], tag, n);
  Tensor in = Tensor::Zeros({n}, DType::kF32);
  std::vector<CommRequestPtr> reqs;
  absl::StatusOr<CommRequestPtr> r = c.IRecv(in, prev, tag);
  ASSERT_TRUE(r.ok()) << r.status();
  reqs.push_back(std::move(*r));
  r = c.ISend(out, next, tag);
  ASSERT_TRUE(r.ok()) << r.status();
  reqs.push_back(std::move(*r));
  absl::Status st = WaitAll(reqs);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(FirstWrong(in, ranks[prev], tag), -1);
}

std::vector<int> Iota(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

TEST_P(P2pTest, RingOverTheWorld) {
  std::unique_ptr<Communicator> c = MakeWorld();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(std::string(c->backend()), GetParam());
  // 1 element, an odd size, and 1 MiB (past the eager limits: rendezvous).
  for (int64_t n : {1, 19, 1 << 18}) Ring(*c, Iota(WorldSize()), n, 3);
}

TEST_P(P2pTest, RingOverPipelineGroupsOfAMesh) {
  const int world = WorldSize();
  MeshShape shape = world >= 4 ? MeshShape{1, world / 2, 2} : MeshShape{1, world, 1};
  absl::StatusOr<Mesh> mesh = Mesh::Create(shape, world, WorldRank());
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  absl::StatusOr<MeshComms> comms = GetParam() == "mpi" ? CreateMpiMeshComms(*mesh)
                                                        : CreateMeshCommsWithUcxPipeline(*mesh);
  ASSERT_TRUE(comms.ok()) << comms.status();
  EXPECT_EQ(std::string(comms->pp->backend()), GetParam());
  EXPECT_EQ(comms->pp->rank(), mesh->pp_rank());
  Ring(*comms->pp, mesh->PpGroup(), 111, 0);
  // Collectives of a UCX group still work (they run over MPI).
  Tensor t = Tensor::Empty({1}, DType::kI32);
  t.data<int32_t>()[0] = 1;
  ASSERT_TRUE(comms->pp->AllReduceSum(t).ok());
  EXPECT_EQ(t.data<int32_t>()[0], shape.pp);
  // comms (and, for UCX, its world) is destroyed without Close(): the
  // destructor's flush-and-close must not hang or lose the next test.
}

TEST_P(P2pTest, BlockingPairsAndSelf) {
  std::unique_ptr<Communicator> c = MakeWorld();
  const int me = c->rank();
  const int partner = me ^ 1;
  if (partner < c->size()) {
    Tensor out = Payload(me, 4, 33), in = Tensor::Zeros({33}, DType::kF32);
    if (me % 2 == 0) {  // even sends first, odd receives first: no deadlock
      ASSERT_TRUE(c->Send(out, partner, 4).ok());
      ASSERT_TRUE(c->Recv(in, partner, 4).ok());
    } else {
      ASSERT_TRUE(c->Recv(in, partner, 4).ok());
      ASSERT_TRUE(c->Send(out, partner, 4).ok());
    }
    EXPECT_EQ(FirstWrong(in, partner, 4), -1);
  }
  Tensor out = Payload(me, 5, 17), in = Tensor::Zeros({17}, DType::kF32);
  std::vector<CommRequestPtr> reqs;
  reqs.push_back(*c->ISend(out, me, 5));
  reqs.push_back(*c->IRecv(in, me, 5));
  ASSERT_TRUE(WaitAll(reqs).ok());
  EXPECT_EQ(FirstWrong(in, me, 5), -1);
}

// Four tags to the next rank and four to the previous one, all in flight
// at once: receives posted in reverse tag order and waited in a shuffled
// order, sizes differing per tag (a mix-up would be a size error), and two
// messages with one (peer, tag) arriving in the order they were sent.
TEST_P(P2pTest, ManyInFlightTagsKeptApart) {
  std::unique_ptr<Communicator> c = MakeWorld();
  const int n = c->size(), me = c->rank();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  const std::vector<int> tags = {10, 11, 12, 13};
  auto size_of = [](int tag, int dir) { return int64_t{5 + 40 * (tag - 10) + 1000 * dir}; };
  std::vector<Tensor> from_prev, from_next, sends;
  std::vector<CommRequestPtr> recvs, send_reqs;
  for (int k = 3; k >= 0; --k) {
    from_prev.push_back(Tensor::Zeros({size_of(tags[k], 0)}, DType::kF32));
    recvs.push_back(*c->IRecv(from_prev.back(), prev, tags[k]));
    from_next.push_back(Tensor::Zeros({size_of(tags[k], 1)}, DType::kF32));
    recvs.push_back(*c->IRecv(from_next.back(), next, tags[k]));
  }
  Tensor first = Tensor::Zeros({8}, DType::kF32), second = Tensor::Zeros({8}, DType::kF32);
  recvs.push_back(*c->IRecv(first, prev, 20));
  recvs.push_back(*c->IRecv(second, prev, 20));
  for (int k = 0; k < 4; ++k) {
    sends.push_back(Payload(me, tags[k], size_of(tags[k], 0)));
    send_reqs.push_back(*c->ISend(sends.back(), next, tags[k]));
    sends.push_back(Payload(me, tags[k], size_of(tags[k], 1)));
    send_reqs.push_back(*c->ISend(sends.back(), prev, tags[k]));
  }
  sends.push_back(Payload(me, 1, 8));
  send_reqs.push_back(*c->ISend(sends.back(), next, 20));
  sends.push_back(Payload(me, 2, 8));
  send_reqs.push_back(*c->ISend(sends.back(), next, 20));
  std::vector<CommRequestPtr> shuffled;
  for (size_t i = 0; i < recvs.size(); ++i) shuffled.push_back(std::move(recvs[(i * 7 + 3) % recvs.size()]));
  absl::Status st = WaitAll(shuffled);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitAll(send_reqs).ok());
  for (int k = 3, j = 0; k >= 0; --k, ++j) {
    EXPECT_EQ(FirstWrong(from_prev[j], prev, tags[k]), -1) << "tag " << tags[k];
    EXPECT_EQ(FirstWrong(from_next[j], next, tags[k]), -1) << "tag " << tags[k];
  }
  EXPECT_EQ(FirstWrong(first, prev, 1), -1);
  EXPECT_EQ(FirstWrong(second, prev, 2), -1);
}

// One step of the compute that overlaps a transfer: a pass over `work`
// whose result each rank checks, so it cannot be skipped.
double ComputeStep(const std::vector<double>& work, int step) {
  double acc = 0;
  for (size_t i = 0; i < work.size(); ++i) acc += work[i] * ((i + step) % 7);
  return acc;
}

// Overlap, as an ordering rather than a timing: a 16 MiB ring transfer
// (rendezvous on every transport) is posted, proven still pending, and
// then completes while this rank computes and polls Test() between steps:
// nothing of it is left to Wait. A backend whose requests only move inside Wait (Test()
// always false, as UCX had before) fails here instead of passing a "busy"
// loop that could not fail. The compute's own result is checked, and the
// wall times of both phases are printed (measured, not asserted).
TEST_P(P2pTest, TransfersProgressWhileTheHostComputes) {
  std::unique_ptr<Communicator> c = MakeWorld();
  const int n = c->size(), me = c->rank();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  constexpr int64_t kFloats = int64_t{4} << 20;  // 16 MiB
  Tensor out = Payload(me, 40, kFloats), in = Tensor::Zeros({kFloats}, DType::kF32);
  absl::StatusOr<CommRequestPtr> recv = c->IRecv(in, prev, 40);
  ASSERT_TRUE(recv.ok()) << recv.status();
  // No rank has sent yet: a receive that reports complete now is lying.
  EXPECT_FALSE((*recv)->Test()) << "complete before anything was sent";
  ASSERT_TRUE(c->Barrier().ok());
  absl::StatusOr<CommRequestPtr> send = c->ISend(out, next, 40);
  ASSERT_TRUE(send.ok()) << send.status();

  const std::vector<double> work(1 << 16, 0.5);
  const auto start = std::chrono::steady_clock::now();
  int steps = 0;
  double sum = 0;
  bool recv_done = false, send_done = false;
  // A generous cap (the transfer takes milliseconds; 2 oversubscribed cores may stall it).
  while (!(recv_done && send_done) && std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    sum += ComputeStep(work, steps++);
    recv_done = recv_done || (*recv)->Test();
    send_done = send_done || (*send)->Test();
  }
  const double overlapped_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(recv_done) << "the receive never completed while the host computed and polled";
  EXPECT_TRUE(send_done) << "the send never completed while the host computed and polled";
  double want = 0;
  for (int s = 0; s < steps; ++s) want += ComputeStep(work, s);
  EXPECT_EQ(sum, want);
  ASSERT_TRUE((*recv)->Wait().ok());
  ASSERT_TRUE((*send)->Wait().ok());
  EXPECT_EQ(FirstWrong(in, prev, 40), -1);
  if (me == 0) {
    std::printf("[%s] 16 MiB ring: done after %d compute steps in flight, %.1f ms\n", c->backend(), steps,
                overlapped_s * 1e3);
  }
}

// Receives that disagree with the sender's size fail with a Status that
// names the peer, tag and sizes; both messages are consumed, so the next
// exchange works.
TEST_P(P2pTest, WrongSizedReceiveIsAStatusNotAHang) {
  std::unique_ptr<Communicator> c = MakeWorld();
  const int n = c->size(), me = c->rank();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  Tensor out = Payload(me, 6, 16);
  CommRequestPtr s1 = *c->ISend(out, next, 6);
  CommRequestPtr s2 = *c->ISend(out, next, 7);
  Tensor small = Tensor::Zeros({8}, DType::kF32), big = Tensor::Zeros({32}, DType::kF32);
  absl::Status st = c->Recv(small, prev, 6);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(absl::StrCat("recv from rank ", prev, " tag 6")));
  EXPECT_THAT(std::string(st.message()), HasSubstr("longer than the buffer's 32 bytes"));
  st = c->Recv(big, prev, 7);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("received 64 bytes, but the buffer holds 128"));
  EXPECT_TRUE(s1->Wait().ok());
  EXPECT_TRUE(s2->Wait().ok());
  Ring(*c, Iota(n), 16, 8);
}

TEST_P(P2pTest, BadPeerOrTagIsRefusedBeforeAnyTransfer) {
  std::unique_ptr<Communicator> c = MakeWorld();
  Tensor t = Tensor::Zeros({4}, DType::kF32);
  absl::StatusOr<CommRequestPtr> r = c->ISend(t, c->size(), 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr(absl::StrCat("peer ", c->size(), " is outside the group of ", c->size())));
  r = c->IRecv(t, -1, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  r = c->ISend(t, 0, kMaxCommTag + 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("tag 32768 is outside"));
  Tensor undefined;
  EXPECT_EQ(c->Send(undefined, 0, 0).code(), absl::StatusCode::kInvalidArgument);
}

// A receive dropped without Wait() is cancelled: the message it would have
// matched, sent later, goes to the next receive with that tag.
TEST_P(P2pTest, UnwaitedReceiveIsCancelled) {
  std::unique_ptr<Communicator> c = MakeWorld();
  const int n = c->size(), me = c->rank();
  const int prev = (me + n - 1) % n;
  Tensor dropped = Tensor::Zeros({9}, DType::kF32);
  {
    absl::StatusOr<CommRequestPtr> r = c->IRecv(dropped, prev, 30);
    ASSERT_TRUE(r.ok());
  }
  ASSERT_TRUE(c->Barrier().ok());  // every rank's receive is gone before anyone sends
  Ring(*c, Iota(n), 9, 30);
  EXPECT_EQ(FirstWrong(dropped, prev, 30), 0) << "the cancelled receive got data";
}

// Two communicators over the same ranks (and, for UCX, the same worker):
// the same (peer, tag) on both never mix.
TEST_P(P2pTest, CommunicatorsKeptApart) {
  std::unique_ptr<Communicator> a = MakeWorld(), b = MakeWorld();
  if (GetParam() == "ucx") {
    EXPECT_NE(dynamic_cast<UcxP2pCommunicator&>(*a).comm_id(),
              dynamic_cast<UcxP2pCommunicator&>(*b).comm_id());
  }
  const int n = a->size(), me = a->rank();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  Tensor in_a = Tensor::Zeros({12}, DType::kF32), in_b = Tensor::Zeros({12}, DType::kF32);
  Tensor out_a = Payload(me, 100, 12), out_b = Payload(me, 200, 12);
  std::vector<CommRequestPtr> reqs;
  reqs.push_back(*b->IRecv(in_b, prev, 1));
  reqs.push_back(*a->IRecv(in_a, prev, 1));
  reqs.push_back(*a->ISend(out_a, next, 1));
  reqs.push_back(*b->ISend(out_b, next, 1));
  ASSERT_TRUE(WaitAll(reqs).ok());
  EXPECT_EQ(FirstWrong(in_a, prev, 100), -1);
  EXPECT_EQ(FirstWrong(in_b, prev, 200), -1);
}

INSTANTIATE_TEST_SUITE_P(Transports, P2pTest, ::testing::Values("mpi", "ucx"),
                         [](const auto& info) { return info.param; });

TEST(UcxCheckTest, StatusCarriesUcxTextCallAndLine) {
  absl::Status st = FromUcx(UCS_ERR_MESSAGE_TRUNCATED, "ucp_tag_recv_nbx(w)", "y.cc", 3);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("in ucp_tag_recv_nbx(w) at y.cc:3"));
  EXPECT_EQ(FromUcx(UCS_ERR_UNREACHABLE, "x", "y.cc", 1).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(FromUcx(UCS_OK, "x", "y.cc", 1).ok());
}

}  // namespace
}  // namespace baton
