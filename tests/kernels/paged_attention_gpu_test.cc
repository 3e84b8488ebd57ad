// GPU parity of the paged decode kernels against the CPU reference
// (kernels/cpu/paged_attention.h) on fresh random inputs: attention of
// decode and prefill rows over shuffled block tables (GQA, MHA and MQA
// shapes, odd head dims, block sizes 16 and 5, sequences of 1 to 300
// tokens), the KV write, RoPE at positions, and the greedy argmax.
// Tolerances (|got − ref| <= atol + rtol·|ref|): f32 2e-5 (outputs are
// convex combinations of O(1) values; fp32 reordering and __expf);
// bf16 1e-2 (8 significant bits, rounding of the output).
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

INSTANTIATE_TEST_SUITE_P(Dtypes, PagedGpu, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace baton

#else  // !BATON_HAVE_CUDA

TEST(PagedGpu, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif
