// GPU parity of the paged decode kernels against the CPU reference
// (kernels/cpu/paged_attention.h) on fresh random inputs: attention of
// decode and prefill rows over shuffled block tables (GQA, MHA and MQA
// shapes, odd head dims, block sizes 16 and 5, sequences of 1 to 300
// tokens), the KV write, RoPE at positions, and the greedy argmax.
// Tolerances (|got − ref| <= atol + rtol·|ref|): f32 2e-5 (outputs are
// convex combinations of O(1) values; fp32 reordering and __expf);
// bf16 1e-2 (8 significant bits, rounding of the output). Also padding
// rows (row_pos -1) and the logit-row gather.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/paged_attention.h"
#include "kernels/gpu.h"
#include "runtime/tensor.h"
#include "tests/kernels/op_test_util.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#include "tests/kernels/gpu_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::Input;
using testing::ToDevice;
using testing::ToDeviceI32;
using testing::ToHost;

cuda::Float Tag(DType t) { return t == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32; }

Tensor I32(const std::vector<int32_t>& v) {
  Tensor t = Tensor::Empty({static_cast<int64_t>(v.size())}, DType::kI32);
  std::copy(v.begin(), v.end(), t.data<int32_t>());
  return t;
}

struct Scenario {
  int64_t h, kv, d, block_size;
  std::vector<int64_t> lengths;  // tokens of each sequence
  std::vector<int64_t> new_rows; // rows of each sequence in this call (its last ones)
};

struct Rows {
  std::vector<int32_t> tables, row_seq, row_pos;
  int64_t max_blocks = 0, num_blocks = 0, rows = 0;
};

Rows Layout(const Scenario& s, std::mt19937_64& rng) {
  Rows r;
  for (int64_t len : s.lengths) r.max_blocks = std::max(r.max_blocks, (len + s.block_size - 1) / s.block_size);
  r.num_blocks = r.max_blocks * static_cast<int64_t>(s.lengths.size()) + 3;
  std::vector<int32_t> perm(static_cast<size_t>(r.num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);  // blocks out of order
  r.tables.assign(s.lengths.size() * static_cast<size_t>(r.max_blocks), -1);
  size_t next = 0;
  for (size_t q = 0; q < s.lengths.size(); ++q) {
    for (int64_t b = 0; b < (s.lengths[q] + s.block_size - 1) / s.block_size; ++b) {
      r.tables[q * r.max_blocks + b] = perm[next++];
    }
    for (int64_t p = s.lengths[q] - s.new_rows[q]; p < s.lengths[q]; ++p) {
      r.row_seq.push_back(static_cast<int32_t>(q));
      r.row_pos.push_back(static_cast<int32_t>(p));
    }
  }
  r.rows = static_cast<int64_t>(r.row_seq.size());
  return r;
}

class PagedGpu : public ::testing::TestWithParam<DType> {};

TEST_P(PagedGpu, AttentionMatchesTheCpuReference) {
  REQUIRE_GPU();
  const DType dt = GetParam();
  const testing::Tolerance tol = dt == DType::kF32 ? testing::Tolerance{2e-5, 2e-5} : testing::Tolerance{1e-2, 1e-2};
  std::mt19937_64 rng(17);
  const Scenario scenarios[] = {
      {4, 2, 64, 16, {1, 17, 300, 40}, {1, 1, 1, 40}},  // decode rows and one prefill
      {7, 7, 38, 5, {9, 23}, {9, 2}},                  // MHA, odd head dim and block size
      {8, 1, 128, 16, {129, 64, 5}, {1, 1, 5}},          // MQA
      {2, 2, 256, 16, {33}, {33}},                       // the largest head dim
  };
  for (const Scenario& s : scenarios) {
    const Rows r = Layout(s, rng);
    const Tensor q = Input({r.rows, s.h, s.d}, dt, rng, 0.1, 1.0);
    const Tensor k = Input({r.num_blocks, s.block_size, s.kv, s.d}, dt, rng, 0.1, 1.0);
    const Tensor v = Input({r.num_blocks, s.block_size, s.kv, s.d}, dt, rng, 0.1, 1.0);
    Tensor ref = Tensor::Empty({r.rows, s.h, s.d}, DType::kF32);
    const cpu::PagedRows host{r.tables.data(), r.max_blocks, r.row_seq.data(), r.row_pos.data(), r.rows,
                              s.block_size};
    cpu::PagedAttentionForward(q.data<float>(), k.data<float>(), v.data<float>(), host, s.h, s.kv, s.d,
                               ref.data<float>());
    const Tensor dq = ToDevice(q, dt), dk = ToDevice(k, dt), dv = ToDevice(v, dt);
    const Tensor tables = ToDeviceI32(I32(r.tables)), seq = ToDeviceI32(I32(r.row_seq)),
                 pos = ToDeviceI32(I32(r.row_pos));
    Tensor out = Tensor::Empty({r.rows, s.h, s.d}, dt, DefaultCudaAllocator());
    const cpu::PagedRows dev{tables.data<int32_t>(), r.max_blocks, seq.data<int32_t>(), pos.data<int32_t>(), r.rows,
                             s.block_size};
    ASSERT_TRUE(cuda::PagedAttentionForward(Tag(dt), dq.raw(), dk.raw(), dv.raw(), dev, s.h, s.kv, s.d, out.raw(),
                                            cuda::CurrentStream())
                    .ok());
    EXPECT_TRUE(AllClose(ToHost(out), ref, tol, absl::StrCat("h ", s.h, " kv ", s.kv, " d ", s.d)));
  }
}

TEST_P(PagedGpu, KvWriteAndRopeMatchTheCpuReference) {
  REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937_64 rng(23);
  const Scenario s{4, 2, 38, 5, {12, 3}, {4, 3}};
  const Rows r = Layout(s, rng);
  const Tensor kn = Input({r.rows, s.kv, s.d}, dt, rng), vn = Input({r.rows, s.kv, s.d}, dt, rng);
  Tensor kp = Input({r.num_blocks, s.block_size, s.kv, s.d}, dt, rng), vp = kp.Clone();
  Tensor dkp = ToDevice(kp, dt), dvp = ToDevice(vp, dt);
  const cpu::PagedRows host{r.tables.data(), r.max_blocks, r.row_seq.data(), r.row_pos.data(), r.rows, s.block_size};
  cpu::PagedKvWrite(kn.data<float>(), vn.data<float>(), host, s.kv, s.d, kp.data<float>(), vp.data<float>());
  const Tensor tables = ToDeviceI32(I32(r.tables)), seq = ToDeviceI32(I32(r.row_seq)), pos = ToDeviceI32(I32(r.row_pos));
  const cpu::PagedRows dev{tables.data<int32_t>(), r.max_blocks, seq.data<int32_t>(), pos.data<int32_t>(), r.rows,
                           s.block_size};
  const Tensor dkn = ToDevice(kn, dt), dvn = ToDevice(vn, dt);
  ASSERT_TRUE(cuda::PagedKvWrite(Tag(dt), dkn.raw(), dvn.raw(), dev, s.kv, s.d, dkp.raw(), dvp.raw(),
                                 cuda::CurrentStream()).ok());
  EXPECT_TRUE(AllClose(ToHost(dkp), kp, {1e-12, 0}, "k pool"));  // a copy: exact
  EXPECT_TRUE(AllClose(ToHost(dvp), vp, {1e-12, 0}, "v pool"));
  // RoPE at positions 0..2000 (long-context angles), llama3 scaling.
  RopeParams p{500000.0, {RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 8192}};
  std::vector<int32_t> positions;
  for (int i = 0; i < 19; ++i) positions.push_back(i * 111 % 2003);
  Tensor x = Input({19, 3, 64}, dt, rng);
  Tensor dx = ToDevice(x, dt);
  cpu::RopeAtPositions(x.data<float>(), positions.data(), 19, 3, 64, p);
  const Tensor dpos = ToDeviceI32(I32(positions));
  ASSERT_TRUE(cuda::RopeAtPositions(Tag(dt), dx.raw(), dpos.data<int32_t>(), 19, 3, 64, p, cuda::CurrentStream()).ok());
  EXPECT_TRUE(AllClose(ToHost(dx), x, dt == DType::kF32 ? testing::Tolerance{1e-6, 1e-6} : testing::Tolerance{1e-2, 1e-2},
                       "rope"));
}

TEST_P(PagedGpu, ArgmaxMatchesGreedyOnTheHost) {
  REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937_64 rng(29);
  for (int64_t vocab : {1, 7, 258, 32000, 151936}) {
    Tensor logits = Input({5, vocab}, dt, rng, 0.0, 8.0);
    if (vocab > 3) logits.data<float>()[2 * vocab + 3] = logits.data<float>()[2 * vocab + 1] = 1e4f;  // a tie: id 1 wins
    const Tensor d = ToDevice(logits, dt);
    Tensor ids = Tensor::Empty({5}, DType::kI32, DefaultCudaAllocator());
    ASSERT_TRUE(cuda::ArgmaxRows(Tag(dt), d.raw(), 5, vocab, ids.data<int32_t>(), cuda::CurrentStream()).ok());
    const Tensor got = ToHost(ids);
    for (int64_t r = 0; r < 5; ++r) {
      const float* row = logits.data<float>() + r * vocab;
      EXPECT_EQ(got.data<int32_t>()[r], std::max_element(row, row + vocab) - row) << "vocab " << vocab << " row " << r;
    }
  }
}

// Padding rows (row_pos -1, a CUDA-graph bucket wider than the batch) write
// nothing into the pools and attend to nothing (zeros, not NaN); the real
// rows beside them are untouched by their presence. And the logit-row gather.
TEST_P(PagedGpu, PaddingRowsAreInertAndGatherPicksRows) {
  REQUIRE_GPU();
  const DType dt = GetParam();
  std::mt19937_64 rng(31);
  const int64_t h = 4, kv = 2, d = 64, bs = 16, blocks = 4;
  const std::vector<int32_t> tables = {2, 0, -1, -1}, row_seq = {0, 1, 0, 0}, row_pos = {20, -1, 5, -1};
  const Tensor kn = Input({4, kv, d}, dt, rng), vn = Input({4, kv, d}, dt, rng);
  const Tensor kp = Input({blocks, bs, kv, d}, dt, rng), vp = Input({blocks, bs, kv, d}, dt, rng);
  Tensor dkp = ToDevice(kp, dt), dvp = ToDevice(vp, dt);
  const Tensor dt_tables = ToDeviceI32(I32(tables)), dseq = ToDeviceI32(I32(row_seq)), dpos = ToDeviceI32(I32(row_pos));
  const cpu::PagedRows dev{dt_tables.data<int32_t>(), 2, dseq.data<int32_t>(), dpos.data<int32_t>(), 4, bs};
  ASSERT_TRUE(cuda::PagedKvWrite(Tag(dt), ToDevice(kn, dt).raw(), ToDevice(vn, dt).raw(), dev, kv, d, dkp.raw(),
                                 dvp.raw(), cuda::CurrentStream()).ok());
  // The CPU reference on the real rows only (0 and 2).
  Tensor kref = ToHost(ToDevice(kp, dt)), vref = ToHost(ToDevice(vp, dt));
  const std::vector<int32_t> real_seq = {0, 0}, real_pos = {20, 5};
  const Tensor kreal = ToHost(ToDevice(kn, dt)), vreal = ToHost(ToDevice(vn, dt));
  Tensor k2 = Tensor::Empty({2, kv, d}, DType::kF32), v2 = Tensor::Empty({2, kv, d}, DType::kF32);
  k2.Slice(0, 1).CopyFrom(kreal.Slice(0, 1)), k2.Slice(1, 1).CopyFrom(kreal.Slice(2, 1));
  v2.Slice(0, 1).CopyFrom(vreal.Slice(0, 1)), v2.Slice(1, 1).CopyFrom(vreal.Slice(2, 1));
  const cpu::PagedRows host{tables.data(), 2, real_seq.data(), real_pos.data(), 2, bs};
  cpu::PagedKvWrite(k2.data<float>(), v2.data<float>(), host, kv, d, kref.data<float>(), vref.data<float>());
  EXPECT_TRUE(AllClose(ToHost(dkp), kref, {1e-12, 0}, "k pool with padding rows"));
  EXPECT_TRUE(AllClose(ToHost(dvp), vref, {1e-12, 0}, "v pool with padding rows"));
  const Tensor q = Input({4, h, d}, dt, rng, 0.1, 1.0);
  Tensor out = Tensor::Empty({4, h, d}, dt, DefaultCudaAllocator());
  ASSERT_TRUE(cuda::PagedAttentionForward(Tag(dt), ToDevice(q, dt).raw(), dkp.raw(), dvp.raw(), dev, h, kv, d,
                                          out.raw(), cuda::CurrentStream()).ok());
  const Tensor got = ToHost(out);
  for (int64_t row : {1, 3}) {
    for (int64_t i = 0; i < h * d; ++i) ASSERT_EQ(got.data<float>()[row * h * d + i], 0.f) << "padding row " << row;
  }
  Tensor q2 = Tensor::Empty({2, h, d}, DType::kF32), ref = Tensor::Empty({2, h, d}, DType::kF32);
  const Tensor qh = ToHost(ToDevice(q, dt));
  q2.Slice(0, 1).CopyFrom(qh.Slice(0, 1)), q2.Slice(1, 1).CopyFrom(qh.Slice(2, 1));
  cpu::PagedAttentionForward(q2.data<float>(), kref.data<float>(), vref.data<float>(), host, h, kv, d,
                             ref.data<float>());
  Tensor real = Tensor::Empty({2, h, d}, DType::kF32);
  real.Slice(0, 1).CopyFrom(got.Slice(0, 1)), real.Slice(1, 1).CopyFrom(got.Slice(2, 1));
  EXPECT_TRUE(AllClose(real, ref, dt == DType::kF32 ? testing::Tolerance{2e-5, 2e-5} : testing::Tolerance{1e-2, 1e-2},
                       "real rows beside padding"));
  // Gather rows 2, 0, 2 of a (3, 300) matrix.
  const Tensor x = Input({3, 300}, dt, rng);
  const Tensor pick = ToDeviceI32(I32({2, 0, 2}));
  Tensor gathered = Tensor::Empty({3, 300}, dt, DefaultCudaAllocator());
  ASSERT_TRUE(cuda::GatherRows(Tag(dt), ToDevice(x, dt).raw(), pick.data<int32_t>(), 3, 300, gathered.raw(),
                               cuda::CurrentStream()).ok());
  const Tensor xh = ToHost(ToDevice(x, dt)), gh = ToHost(gathered);
  for (int64_t i = 0; i < 300; ++i) {
    ASSERT_EQ(gh.data<float>()[i], xh.data<float>()[2 * 300 + i]);
    ASSERT_EQ(gh.data<float>()[300 + i], xh.data<float>()[i]);
    ASSERT_EQ(gh.data<float>()[600 + i], xh.data<float>()[2 * 300 + i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PagedGpu, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(PagedGpu, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
