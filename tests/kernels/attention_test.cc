// Causal GQA attention: forward against explicit softmax loops, backward
// against finite differences in double, stored-vs-recomputed probabilities
// bit for bit, GQA equal to MHA with repeated kv heads, f32/f64 agreement,
// and the same bits for any thread count.
#include <omp.h>

#include <cmath>
#include <ostream>
#include <random>

#include "gtest/gtest.h"
#include "runtime/ops.h"
#include "tests/kernels/op_test_util.h"

namespace baton {
namespace {

using testing::AllClose;
using testing::kGradTol;

struct Dims {
  int64_t b, t, h, kv, d;
};

void PrintTo(const Dims& s, std::ostream* os) {
  *os << "B" << s.b << " T" << s.t << " H" << s.h << " KV" << s.kv << " D" << s.d;
}

struct Inputs {
  Tensor q, k, v;
};

Inputs MakeInputs(const Dims& s, DType dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return {testing::RandomTensor({s.b, s.t, s.h, s.d}, dt, rng),
          testing::RandomTensor({s.b, s.t, s.kv, s.d}, dt, rng),
          testing::RandomTensor({s.b, s.t, s.kv, s.d}, dt, rng)};
}

// out and lse by explicit loops in double, materialising the softmax.
void NaiveAttention(const Inputs& in, const Dims& s, std::vector<double>& out,
                    std::vector<double>& lse) {
  const std::vector<double> q = testing::ToDoubles(in.q), k = testing::ToDoubles(in.k),
                            v = testing::ToDoubles(in.v);
  out.assign(s.b * s.t * s.h * s.d, 0.0);
  lse.assign(s.b * s.h * s.t, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t h = 0; h < s.h; ++h) {
      const int64_t g = h / (s.h / s.kv);
      for (int64_t i = 0; i < s.t; ++i) {
        std::vector<double> sc(i + 1);
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < s.d; ++c)
            dot += q[((b * s.t + i) * s.h + h) * s.d + c] * k[((b * s.t + j) * s.kv + g) * s.d + c];
          sc[j] = dot * scale;
          mx = std::max(mx, sc[j]);
        }
        double z = 0;
        for (int64_t j = 0; j <= i; ++j) z += std::exp(sc[j] - mx);
        lse[(b * s.h + h) * s.t + i] = mx + std::log(z);
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t c = 0; c < s.d; ++c)
            out[((b * s.t + i) * s.h + h) * s.d + c] +=
                std::exp(sc[j] - mx) / z * v[((b * s.t + j) * s.kv + g) * s.d + c];
      }
    }
}

struct Grads {
  Tensor dq, dk, dv;
};

Grads RunBackward(const Inputs& in, const Dims& s, const Tensor& dout, bool store_probs) {
  const DType dt = in.q.dtype();
  Tensor out = Tensor::Empty(in.q.shape(), dt), lse = Tensor::Empty({s.b, s.h, s.t}, dt);
  Tensor probs = store_probs ? Tensor::Empty({s.b, s.h, s.t, s.t}, dt) : Tensor();
  BATON_EXPECT_OK(ops::Attention(in.q, in.k, in.v, out, lse, store_probs ? &probs : nullptr));
  Grads g{Tensor::Empty(in.q.shape(), dt), Tensor::Empty(in.k.shape(), dt),
          Tensor::Empty(in.v.shape(), dt)};
  BATON_EXPECT_OK(ops::AttentionBackward(dout, in.q, in.k, in.v, out, lse, store_probs ? &probs : nullptr, g.dq,
                         g.dk, g.dv));
  return g;
}

TEST(Attention, ForwardMatchesNaiveSoftmax) {
  const Dims s{2, 7, 4, 2, 6};
  const Inputs in = MakeInputs(s, DType::kF64, 11);
  Tensor out = Tensor::Empty(in.q.shape(), DType::kF64);
  Tensor lse = Tensor::Empty({s.b, s.h, s.t}, DType::kF64);
  Tensor probs = Tensor::Empty({s.b, s.h, s.t, s.t}, DType::kF64);
  BATON_EXPECT_OK(ops::Attention(in.q, in.k, in.v, out, lse, &probs));
  std::vector<double> ref_out, ref_lse;
  NaiveAttention(in, s, ref_out, ref_lse);
  EXPECT_TRUE(AllClose(testing::ToDoubles(out), ref_out, {1e-14, 1e-13}, "out"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(lse), ref_lse, {1e-14, 1e-13}, "lse"));
  // Stored probabilities: rows sum to 1, the causal mask is exactly 0.
  for (int64_t row = 0; row < s.b * s.h * s.t; ++row) {
    const int64_t i = row % s.t;
    double sum = 0;
    for (int64_t j = 0; j < s.t; ++j) {
      const double p = probs.data<double>()[row * s.t + j];
      if (j > i) {
        EXPECT_EQ(p, 0.0) << "row " << row << " col " << j;
      }
      sum += p;
    }
    EXPECT_NEAR(sum, 1.0, 1e-14) << "row " << row;
  }
}

class AttentionGrad : public ::testing::TestWithParam<Dims> {};

TEST_P(AttentionGrad, BackwardMatchesFiniteDifferences) {
  const Dims s = GetParam();
  Inputs in = MakeInputs(s, DType::kF64, 12);
  std::mt19937_64 rng(13);
  const Tensor r = testing::RandomTensor(in.q.shape(), DType::kF64, rng);
  Tensor out = Tensor::Empty(in.q.shape(), DType::kF64);
  Tensor lse = Tensor::Empty({s.b, s.h, s.t}, DType::kF64);
  auto loss = [&] {
    BATON_EXPECT_OK(ops::Attention(in.q, in.k, in.v, out, lse, nullptr));
    return testing::Dot(out, r);
  };
  const Grads g = RunBackward(in, s, r, /*store_probs=*/false);
  EXPECT_TRUE(AllClose(testing::ToDoubles(g.dq), testing::NumericGradient(in.q, loss), kGradTol, "dq"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(g.dk), testing::NumericGradient(in.k, loss), kGradTol, "dk"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(g.dv), testing::NumericGradient(in.v, loss), kGradTol, "dv"));
}

// D=6 runs only the tail of the 8-lane dot product, D=19 both parts; KV=1 is MQA.
INSTANTIATE_TEST_SUITE_P(Shapes, AttentionGrad,
                         ::testing::Values(Dims{2, 7, 4, 2, 6}, Dims{1, 5, 3, 1, 19},
                                           Dims{1, 4, 2, 2, 8}),
                         [](const ::testing::TestParamInfo<Dims>& info) {
                           const Dims& s = info.param;
                           return absl::StrCat("B", s.b, "T", s.t, "H", s.h, "KV", s.kv, "D", s.d);
                         });

TEST(Attention, StoredAndRecomputedProbsGiveIdenticalBits) {
  const Dims s{2, 9, 4, 2, 12};
  for (DType dt : {DType::kF32, DType::kF64}) {
    const Inputs in = MakeInputs(s, dt, 21);
    std::mt19937_64 rng(22);
    const Tensor dout = testing::RandomTensor(in.q.shape(), dt, rng);
    const Grads stored = RunBackward(in, s, dout, true);
    const Grads recomputed = RunBackward(in, s, dout, false);
    EXPECT_TRUE(testing::BitwiseEqual(stored.dq, recomputed.dq)) << DTypeName(dt);
    EXPECT_TRUE(testing::BitwiseEqual(stored.dk, recomputed.dk)) << DTypeName(dt);
    EXPECT_TRUE(testing::BitwiseEqual(stored.dv, recomputed.dv)) << DTypeName(dt);
  }
}

TEST(Attention, GqaEqualsMhaWithRepeatedKvHeads) {
  const Dims gqa{2, 7, 4, 2, 6};
  const Dims mha{2, 7, 4, 4, 6};
  const Inputs in = MakeInputs(gqa, DType::kF64, 31);
  // Repeat each kv head over its group of H/KV query heads.
  Inputs rep{in.q, Tensor::Empty({mha.b, mha.t, mha.h, mha.d}, DType::kF64),
             Tensor::Empty({mha.b, mha.t, mha.h, mha.d}, DType::kF64)};
  const int64_t group = gqa.h / gqa.kv;
  for (int64_t bt = 0; bt < gqa.b * gqa.t; ++bt)
    for (int64_t h = 0; h < gqa.h; ++h)
      for (int64_t c = 0; c < gqa.d; ++c) {
        const int64_t src = (bt * gqa.kv + h / group) * gqa.d + c, dst = (bt * mha.h + h) * mha.d + c;
        rep.k.data<double>()[dst] = in.k.data<double>()[src];
        rep.v.data<double>()[dst] = in.v.data<double>()[src];
      }
  Tensor out_g = Tensor::Empty(in.q.shape(), DType::kF64), out_m = Tensor::Empty(in.q.shape(), DType::kF64);
  Tensor lse_g = Tensor::Empty({2, 4, 7}, DType::kF64), lse_m = Tensor::Empty({2, 4, 7}, DType::kF64);
  BATON_EXPECT_OK(ops::Attention(in.q, in.k, in.v, out_g, lse_g, nullptr));
  BATON_EXPECT_OK(ops::Attention(rep.q, rep.k, rep.v, out_m, lse_m, nullptr));
  EXPECT_TRUE(testing::BitwiseEqual(out_g, out_m));
  EXPECT_TRUE(testing::BitwiseEqual(lse_g, lse_m));

  std::mt19937_64 rng(32);
  const Tensor dout = testing::RandomTensor(in.q.shape(), DType::kF64, rng);
  const Grads g = RunBackward(in, gqa, dout, false);
  const Grads m = RunBackward(rep, mha, dout, false);
  EXPECT_TRUE(testing::BitwiseEqual(g.dq, m.dq));
  // dk, dv of a kv head = Σ over its query heads of the MHA gradients.
  std::vector<double> dk_sum(in.k.numel(), 0.0), dv_sum(in.v.numel(), 0.0);
  for (int64_t bt = 0; bt < gqa.b * gqa.t; ++bt)
    for (int64_t h = 0; h < gqa.h; ++h)
      for (int64_t c = 0; c < gqa.d; ++c) {
        const int64_t dst = (bt * gqa.kv + h / group) * gqa.d + c, src = (bt * mha.h + h) * mha.d + c;
        dk_sum[dst] += m.dk.data<double>()[src];
        dv_sum[dst] += m.dv.data<double>()[src];
      }
  // Same terms, summed in another order: a few ulps of double.
  EXPECT_TRUE(AllClose(testing::ToDoubles(g.dk), dk_sum, {1e-14, 1e-13}, "dk"));
  EXPECT_TRUE(AllClose(testing::ToDoubles(g.dv), dv_sum, {1e-14, 1e-13}, "dv"));
}

TEST(Attention, F32AgreesWithF64) {
  const Dims s{2, 17, 4, 2, 16};
  const Inputs in64 = MakeInputs(s, DType::kF64, 41);
  const Inputs in32{testing::Convert(in64.q, DType::kF32), testing::Convert(in64.k, DType::kF32),
                    testing::Convert(in64.v, DType::kF32)};
  std::mt19937_64 rng(42);
  const Tensor dout64 = testing::RandomTensor(in64.q.shape(), DType::kF64, rng);
  const Tensor dout32 = testing::Convert(dout64, DType::kF32);
  Tensor out64 = Tensor::Empty(in64.q.shape(), DType::kF64), out32 = Tensor::Empty(in64.q.shape(), DType::kF32);
  Tensor lse64 = Tensor::Empty({s.b, s.h, s.t}, DType::kF64), lse32 = Tensor::Empty({s.b, s.h, s.t}, DType::kF32);
  BATON_EXPECT_OK(ops::Attention(in64.q, in64.k, in64.v, out64, lse64, nullptr));
  BATON_EXPECT_OK(ops::Attention(in32.q, in32.k, in32.v, out32, lse32, nullptr));
  // f32 rounding (6e-8) amplified by a few dozen operations per element.
  const testing::Tolerance tol{1e-5, 1e-5};
  EXPECT_TRUE(AllClose(out32, out64, tol, "out"));
  EXPECT_TRUE(AllClose(lse32, lse64, tol, "lse"));
  const Grads g64 = RunBackward(in64, s, dout64, false);
  const Grads g32 = RunBackward(in32, s, dout32, false);
  EXPECT_TRUE(AllClose(g32.dq, g64.dq, tol, "dq"));
  EXPECT_TRUE(AllClose(g32.dk, g64.dk, tol, "dk"));
  EXPECT_TRUE(AllClose(g32.dv, g64.dv, tol, "dv"));
}

TEST(Attention, SameBitsForAnyThreadCount) {
  const Dims s{2, 11, 4, 2, 10};
  const Inputs in = MakeInputs(s, DType::kF32, 51);
  std::mt19937_64 rng(52);
  const Tensor dout = testing::RandomTensor(in.q.shape(), DType::kF32, rng);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Grads one = RunBackward(in, s, dout, false);
  omp_set_num_threads(3);
  const Grads three = RunBackward(in, s, dout, false);
  omp_set_num_threads(saved);
  EXPECT_TRUE(testing::BitwiseEqual(one.dq, three.dq));
  EXPECT_TRUE(testing::BitwiseEqual(one.dk, three.dk));
  EXPECT_TRUE(testing::BitwiseEqual(one.dv, three.dv));
}

}  // namespace
}  // namespace baton
