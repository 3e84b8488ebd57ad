// Tensor-parallel errors are returned, not recorded: TpOps hands back each
// collective's Status with the collective and the tp rank in front, the
// layers (transformer_layer.h) stop at the first one and return it, and a
// Model reports it from the step (comm_status()). One process: the tp group
// is a fake whose collectives fail on demand (no MPI needed).
#include "runtime/tensor_parallel.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model.h"
#include "runtime/transformer_layer.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

// A tp group of two whose sum all-reduce fails after `ok_sums` calls (a peer
// that died mid-step); the other collectives act as if the peer held zeros.
class FlakyTp final : public TpCollectives {
 public:
  explicit FlakyTp(int ok_sums) : ok_sums_(ok_sums) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  absl::Status AllReduceSum(Tensor&) override {
    ++sums_;
    if (sums_ > ok_sums_) return absl::UnavailableError("mpi_communicator.cc:88: MPI_Allreduce: peer 1 is gone");
    return absl::OkStatus();
  }
  absl::Status AllReduceMax(Tensor&) override { return absl::OkStatus(); }
  absl::Status AllGather(const Tensor& in, Tensor& out) override {
    out.Slice(0, in.dim(0)).CopyFrom(in);
    return absl::OkStatus();
  }
  absl::Status ReduceScatterSum(const Tensor& in, Tensor& out) override {
    out.CopyFrom(in.Slice(0, out.dim(0)));
    return absl::OkStatus();
  }
  int sums() const { return sums_; }

 private:
  int ok_sums_;
  int sums_ = 0;
};

TEST(TpOps, AtTpOneTheCollectivesAreNoOpsAndGatherCopies) {
  TpOps tp;
  Tensor a = Tensor::Zeros({3}, DType::kF32), b = Tensor::Empty({3}, DType::kF32);
  a.data<float>()[1] = 2.5f;
  EXPECT_TRUE(tp.AllReduceSum(a).ok());
  EXPECT_TRUE(tp.AllGather(a, b).ok());
  EXPECT_EQ(b.data<float>()[1], 2.5f);
}

TEST(TpOps, ACollectiveErrorIsReturnedWithTheCollectiveAndRank) {
  FlakyTp comm(/*ok_sums=*/0);
  TpOps tp(TensorParallel{2, 0, &comm, false});
  Tensor t = Tensor::Zeros({4}, DType::kF32);
  const absl::Status st = tp.AllReduceSum(t);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("tp all-reduce sum (tp rank 0 of 2): mpi_communicator.cc:88: MPI_Allreduce: peer 1 is gone"));
  EXPECT_TRUE(tp.AllReduceMax(t).ok());  // nothing kept: the next call is the group's own business
}

ModelConfig TinyConfig() {
  ModelConfig c;
  c.layers = 3;
  c.dim = 16;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 24;
  c.vocab_size = 12;
  return c;
}

Tensor Ids(int64_t b, int64_t t) {
  Tensor x = Tensor::Empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int32_t>()[i] = static_cast<int32_t>((i * 5 + 1) % 12);
  return x;
}

// The first layer's row-parallel sum fails: the layer returns the error,
// no later layer runs a collective, and the model's step reports it.
TEST(TensorParallelErrors, TheFirstFailureComesBackFromTheLayersAndTheModel) {
  FlakyTp comm(/*ok_sums=*/1);  // the embedding's sum passes, layer 0's attention sum fails
  auto model = Model::Create(TinyConfig(), DType::kF32, Device::kCpu, {}, TensorParallel{2, 0, &comm, false});
  ASSERT_TRUE(model.ok()) << model.status();
  model->Init(3);
  EXPECT_TRUE(model->comm_status().ok());
  (void)model->ForwardBackward(Ids(2, 5), Ids(2, 5), 0.1, RecomputeConfig{});
  const absl::Status& st = model->comm_status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(st.message()), HasSubstr("tp all-reduce sum (tp rank 0 of 2)"));
  EXPECT_LE(comm.sums(), 3) << "layers after the failed one kept calling the tp group";
}

}  // namespace
}  // namespace baton
