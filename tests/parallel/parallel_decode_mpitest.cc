// Parallel batch inference equals one rank, under mpiexec -n 2 and 4: for
// every (tp, pp) layout of the world (tp=2, pp=2, tp=2 × pp=2, tp=4, pp=4)
// the cached decode's logits (f64) equal the whole model's on one rank to
// relative 1e-10, through a prefill of three sequences and a decode step
// (and all-greedy rows, which cross tp as (max, index), pick the same ids);
// the generation loop (continuous batching over five prompts, blocks of 4
// tokens; greedy, and greedy mixed with sampled requests) returns the same
// tokens for every request. The pipelined step keeps several micro-groups
// in flight.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "parallel/pipelined_decode.h"
#include "parallel/tp_collectives.h"
#include "runtime/batch_generator.h"
#include "runtime/model_decode.h"
#include "runtime/rng.h"

namespace baton {
namespace {

constexpr int64_t kBlocks = 40, kBlockSize = 4;

ModelConfig Config() {
  ModelConfig c;
  c.layers = 4;
  c.dim = 32;
  c.heads = 8;
  c.kv_heads = 4;  // GQA
  c.ffn_dim = 48;
  c.vocab_size = 56;
  c.qkv_bias = true;
  c.init_std = 0.2f;  // far from uniform attention: a wrong key or shard shows
  return c;
}

// The whole model, its biases and norms made to count (Init leaves them 0 and 1).
Model WholeModel() {
  absl::StatusOr<Model> m = Model::Create(Config(), DType::kF64);
  BATON_CHECK(m.ok());
  m->Init(7);
  for (Param& p : m->params()) {
    if (p.name.find(".b") == std::string::npos && p.name.find("norm") == std::string::npos) continue;
    FillNormal(p.value, 11, p.name, 0.3f);
    if (p.name.find("norm") != std::string::npos) {
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<double>()[i] += 1.0;
    }
  }
  return std::move(*m);
}

// The slice of `full` a param holds (rows or columns shard_offset.. of full).
void CopySlice(const Tensor& full, Param& p) {
  const int64_t cols = full.rank() > 1 ? full.dim(1) : 1, out_cols = p.value.rank() > 1 ? p.value.dim(1) : 1;
  for (int64_t r = 0; r < p.value.dim(0); ++r) {
    for (int64_t c = 0; c < out_cols; ++c) {
      const int64_t fr = p.shard_dim == 0 ? r + p.shard_offset : r, fc = p.shard_dim == 1 ? c + p.shard_offset : c;
      p.value.data<double>()[r * out_cols + c] = full.data<double>()[fr * cols + fc];
    }
  }
}

std::vector<int32_t> Sequence(int64_t n, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + seed * 104729 + i * i * 31) % 56);
  return t;
}

// One layout's model, cache and decode on this rank.
struct Layout {
  Mesh mesh;
  MeshComms comms;
  std::unique_ptr<CommTpCollectives> tp;
  std::optional<Model> model;
  std::optional<KvCache> cache;
  std::optional<DecodeModel> decode;
  std::unique_ptr<PipelinedDecode> pipe;
  DecodeForward& forward() { return pipe ? static_cast<DecodeForward&>(*pipe) : *decode; }
};

std::unique_ptr<Layout> MakeLayout(int tp, int pp, Model& whole) {
  int world = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  absl::StatusOr<Mesh> mesh = Mesh::Create({.dp = 1, .pp = pp, .tp = tp}, world, rank);
  BATON_CHECK(mesh.ok());
  absl::StatusOr<MeshComms> comms = CreateMpiMeshComms(*mesh);
  BATON_CHECK(comms.ok());
  auto l = std::make_unique<Layout>(Layout{*mesh, std::move(*comms), nullptr, {}, {}, {}, nullptr});
  l->tp = std::make_unique<CommTpCollectives>(*l->comms.tp);
  const ModelConfig c = Config();
  const int per = c.layers / pp, s = mesh->pp_rank();
  const ModelSlice slice{s * per, (s + 1) * per, s == 0, s == pp - 1};
  absl::StatusOr<Model> m =
      Model::Create(c, DType::kF64, Device::kCpu, slice, TensorParallel{tp, mesh->tp_rank(), l->tp.get()});
  BATON_CHECK(m.ok());
  for (Param& p : m->params()) CopySlice(whole.FindParam(p.name)->value, p);
  l->model.emplace(std::move(*m));
  KvCacheShape shape = KvCacheShape::For(c, DType::kF64, kBlockSize);
  shape.layers = per;
  shape.kv_heads = c.kv_heads / tp;
  absl::StatusOr<KvCache> cache = KvCache::Create(shape, kBlocks);
  BATON_CHECK(cache.ok());
  l->cache.emplace(std::move(*cache));
  absl::StatusOr<DecodeModel> d = DecodeModel::Create(*l->model, *l->cache);
  BATON_CHECK_MSG(d.ok(), d.status().ToString().c_str());
  l->decode.emplace(std::move(*d));
  if (pp > 1) l->pipe = std::make_unique<PipelinedDecode>(*l->decode, *l->comms.pp, 0, PipelineExecutorOptions{}, rank);
  return l;
}

std::vector<std::pair<int, int>> Layouts() {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::vector<std::pair<int, int>> out;  // (tp, pp)
  for (int tp = 1; tp <= world; ++tp) {
    if (world % tp == 0 && world / tp <= Config().layers && Config().kv_heads % tp == 0) out.emplace_back(tp, world / tp);
  }
  return out;
}

double RelDiff(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(a.data<double>()[i] - b.data<double>()[i]));
    scale = std::max(scale, std::abs(b.data<double>()[i]));
  }
  return diff / scale;
}

// Prefill of three sequences (blocks out of order), then one decode step each.
std::vector<DecodeBatch> Steps() {
  const std::vector<std::vector<int32_t>> tables = {{0, 1, 2}, {5, 3}, {4, 6, 7, 9}};
  const std::vector<int64_t> lengths = {9, 6, 13};
  DecodeBatch prefill, decode;
  for (size_t s = 0; s < tables.size(); ++s) {
    std::vector<int32_t> seq = Sequence(lengths[s] + 1, s);
    prefill.AddSequence(tables[s], std::vector<int32_t>(seq.begin(), seq.end() - 1), 0, true);
    decode.AddSequence(tables[s], {seq.back()}, static_cast<int32_t>(lengths[s]), true);
  }
  prefill.Finish();
  decode.Finish();
  return {prefill, decode};
}

// The whole model on this rank alone: the reference.
struct OneRank {
  std::optional<KvCache> cache;
  std::optional<DecodeModel> decode;
};
std::unique_ptr<OneRank> MakeOneRank(Model& whole) {
  auto o = std::make_unique<OneRank>();
  absl::StatusOr<KvCache> cache = KvCache::Create(KvCacheShape::For(Config(), DType::kF64, kBlockSize), kBlocks);
  BATON_CHECK(cache.ok());
  o->cache.emplace(std::move(*cache));
  absl::StatusOr<DecodeModel> d = DecodeModel::Create(whole, *o->cache);
  BATON_CHECK(d.ok());
  o->decode.emplace(std::move(*d));
  return o;
}

// Every request's tokens, by handle: five prompts, at most three running;
// all greedy, or (sampled) every other one drawn at temperature 0.8, top-k 20.
std::map<int64_t, std::vector<int32_t>> Generate(DecodeForward& forward, KvCache& cache, bool sampled = false) {
  BatchGenerator gen(forward, cache, nullptr, SchedulerConfig{.max_batch = 3, .max_prefill_tokens = 64}, 64);
  for (int64_t h = 0; h < 5; ++h) {
    GenerationRequest r;
    r.handle = h;
    r.prompt = Sequence(3 + 4 * h, h + 10);
    r.max_new_tokens = 6 + 3 * h;
    r.sampling.temperature = sampled && h % 2 == 1 ? 0.8 : 0;
    r.sampling.top_k = 20;
    r.sampling.seed = 1000 + h;
    r.stop_at_eos = false;
    BATON_CHECK(gen.Add(std::move(r)).ok());
  }
  std::map<int64_t, std::vector<int32_t>> out;
  while (!gen.idle()) {
    absl::StatusOr<std::vector<GenerationResult>> done = gen.Step();
    BATON_CHECK_MSG(done.ok(), done.status().ToString().c_str());
    for (GenerationResult& r : *done) out[r.handle] = r.tokens;
  }
  return out;
}

TEST(ParallelDecode, LogitsEqualOneRank) {
  Model whole = WholeModel();
  for (auto [tp, pp] : Layouts()) {
    SCOPED_TRACE(testing::Message() << "tp=" << tp << " pp=" << pp);
    std::unique_ptr<OneRank> one = MakeOneRank(whole);
    std::unique_ptr<Layout> par = MakeLayout(tp, pp, whole);
    for (const DecodeBatch& b : Steps()) {
      absl::StatusOr<Tensor> want = one->decode->Forward(b);
      absl::StatusOr<Tensor> got = par->forward().Forward(b);
      ASSERT_TRUE(want.ok() && got.ok()) << got.status();
      ASSERT_EQ(got->shape(), want->shape());
      EXPECT_LT(RelDiff(*got, *want), 1e-10);
      DecodeBatch greedy = b;  // every row greedy: under tp only (max, index) crosses
      greedy.greedy.assign(b.logit_rows.size(), 1);
      absl::StatusOr<Tensor> picked = par->forward().Forward(greedy);
      ASSERT_TRUE(picked.ok()) << picked.status();
      EXPECT_EQ(GreedyTokens(*picked), GreedyTokens(*want));
      if (pp > 1) {
        EXPECT_EQ(par->pipe->last_groups(), std::min(pp, 3));  // several groups in flight
      }
    }
  }
}

TEST(ParallelDecode, GreedyTokensEqualOneRank) {
  Model whole = WholeModel();
  std::unique_ptr<OneRank> one = MakeOneRank(whole);
  const std::map<int64_t, std::vector<int32_t>> want = Generate(*one->decode, *one->cache);
  ASSERT_EQ(want.size(), 5u);
  for (auto [tp, pp] : Layouts()) {
    SCOPED_TRACE(testing::Message() << "tp=" << tp << " pp=" << pp);
    std::unique_ptr<Layout> par = MakeLayout(tp, pp, whole);
    EXPECT_EQ(Generate(par->forward(), *par->cache), want);
  }
}

TEST(ParallelDecode, SampledTokensEqualOneRank) {
  Model whole = WholeModel();
  std::unique_ptr<OneRank> one = MakeOneRank(whole);
  const std::map<int64_t, std::vector<int32_t>> want = Generate(*one->decode, *one->cache, /*sampled=*/true);
  for (auto [tp, pp] : Layouts()) {
    SCOPED_TRACE(testing::Message() << "tp=" << tp << " pp=" << pp);
    std::unique_ptr<Layout> par = MakeLayout(tp, pp, whole);
    EXPECT_EQ(Generate(par->forward(), *par->cache, /*sampled=*/true), want);
  }
}

TEST(ParallelDecode, CheckerSeesAWrongShard) {
  // A tp rank holding another rank's q rows changes the logits: the check above can fail.
  Model whole = WholeModel();
  const auto [tp, pp] = Layouts().back();  // the most tp ranks
  ASSERT_GT(tp, 1);
  std::unique_ptr<OneRank> one = MakeOneRank(whole);
  std::unique_ptr<Layout> par = MakeLayout(tp, pp, whole);
  Param* wq = par->model->FindParam("layers.0.attn.wq");
  if (wq != nullptr && par->mesh.tp_rank() == 0) FillNormal(wq->value, 99, wq->name, 0.2f);
  const DecodeBatch b = Steps().front();
  absl::StatusOr<Tensor> want = one->decode->Forward(b);
  absl::StatusOr<Tensor> got = par->forward().Forward(b);
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_GT(RelDiff(*got, *want), 1e-6);
}

}  // namespace
}  // namespace baton
