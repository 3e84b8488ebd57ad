// Inference forward over the paged KV cache (see model_decode.h). The ops
// are those of LayerForward in the same order, so a cached forward differs
// from the training forward only in how attention reads keys and values.
#include "runtime/model_decode.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "kernels/cpu/paged_attention.h"
#include "runtime/decode_graph.h"
#include "runtime/ops.h"
#include "runtime/token_sampling.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cpu/convert.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#endif

namespace baton {

int DecodeBatch::AddSequence(const std::vector<int32_t>& table, const std::vector<int32_t>& new_tokens,
                             int32_t start, bool want_last) {
  const int seq = static_cast<int>(tables_.size());
  tables_.push_back(table);
  for (size_t i = 0; i < new_tokens.size(); ++i) {
    tokens.push_back(new_tokens[i]);
    row_seq.push_back(seq);
    row_pos.push_back(start + static_cast<int32_t>(i));
  }
  if (want_last && !new_tokens.empty()) logit_rows.push_back(static_cast<int32_t>(tokens.size() - 1));
  return seq;
}

void DecodeBatch::Finish() {
  max_blocks = 1;
  for (const auto& t : tables_) max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(t.size()));
  block_tables.assign(tables_.size() * static_cast<size_t>(max_blocks), -1);
  for (size_t s = 0; s < tables_.size(); ++s) {
    std::copy(tables_[s].begin(), tables_[s].end(), block_tables.begin() + static_cast<int64_t>(s) * max_blocks);
  }
}

absl::StatusOr<DecodeModel> DecodeModel::Create(Model& model, KvCache& cache) {
#ifndef BATON_HAVE_CUDA
  if (model.device() != Device::kCpu) return absl::FailedPreconditionError("baton was built without CUDA");
#endif
  const TensorParallel& tp = model.tensor_parallel();
  if (tp.size > 1 && tp.sequence_parallel) {
    return absl::FailedPreconditionError("the cached decode does not run sequence-parallel (parallel.sequence_parallel=false)");
  }
  const KvCacheShape& s = cache.shape();
  const ModelConfig& c = model.config();
  const ModelSlice& slice = model.slice();
  const int64_t layers = slice.last_layer - slice.first_layer, kv = c.kv_heads / tp.size;
  if (s.layers != layers || s.kv_heads != kv || s.head_dim != c.head_dim() || s.dtype != model.dtype() ||
      cache.k(0).device() != model.device()) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache shape (layers ", s.layers, ", kv heads ", s.kv_heads,
                                                   ", head dim ", s.head_dim, ", ", DTypeName(s.dtype), " on ",
                                                   DeviceName(cache.k(0).device()), ") does not match the model's (",
                                                   layers, " layers, ", kv, " kv heads at tp=", tp.size, ")"));
  }
  DecodeModel dm(model, cache);
  if (model.device() == Device::kCuda) dm.set_cuda_graphs(true);
  return dm;
}

void DecodeModel::set_cuda_graphs(bool on, int64_t max_rows) {
  graphs_.reset();
#ifdef BATON_HAVE_CUDA
  if (on && model_->device() == Device::kCuda) graphs_ = std::make_shared<DecodeGraphs>(max_rows, cache_->block_size());
#else
  (void)on, (void)max_rows;
#endif
}

int64_t DecodeModel::graphs_captured() const {
#ifdef BATON_HAVE_CUDA
  if (graphs_ != nullptr) return graphs_->captured();
#endif
  return 0;
}

absl::Status DecodeModel::graphs_status() const {
#ifdef BATON_HAVE_CUDA
  if (graphs_ != nullptr && graphs_->failures() > 0) return graphs_->last_failure();
#endif
  return absl::OkStatus();
}

const Tensor& DecodeModel::Weight(const std::string& name) const {
  Param* p = model_->FindParam(name);
  BATON_CHECK_MSG(p != nullptr, name.c_str());
  return p->compute.defined() ? p->compute : p->value;
}

namespace {

template <typename T>
void PagedAttentionStep(const DecodeBatch& b, int64_t block_size, Tensor& q, Tensor& k, Tensor& v, Tensor& kpool,
                        Tensor& vpool, const RopeParams& rope, int64_t h, int64_t kv, int64_t d, Tensor& att) {
  const cpu::PagedRows rows{b.block_tables.data(), b.max_blocks, b.row_seq.data(), b.row_pos.data(), b.rows(),
                            block_size};
  cpu::RopeAtPositions(q.data<T>(), b.row_pos.data(), b.rows(), h, d, rope);
  cpu::RopeAtPositions(k.data<T>(), b.row_pos.data(), b.rows(), kv, d, rope);
  cpu::PagedKvWrite(k.data<T>(), v.data<T>(), rows, kv, d, kpool.data<T>(), vpool.data<T>());
  cpu::PagedAttentionForward(q.data<T>(), kpool.data<T>(), vpool.data<T>(), rows, h, kv, d, att.data<T>());
}

#ifdef BATON_HAVE_CUDA
// The same on the GPU; `rows` holds device pointers (DecodeModel::Upload).
// Errors return (not abort): inside a graph capture they make the caller fall back.
absl::Status PagedAttentionStepCuda(const cpu::PagedRows& rows, Tensor& q, Tensor& k, Tensor& v, Tensor& kpool,
                                    Tensor& vpool, const RopeParams& rope, int64_t h, int64_t kv, int64_t d,
                                    Tensor& att) {
  const cuda::Float t = q.dtype() == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32;
  const cudaStream_t stream = cuda::CurrentStream();
  BATON_RETURN_IF_ERROR(cuda::RopeAtPositions(t, q.raw(), rows.row_pos, rows.rows, h, d, rope, stream));
  BATON_RETURN_IF_ERROR(cuda::RopeAtPositions(t, k.raw(), rows.row_pos, rows.rows, kv, d, rope, stream));
  BATON_RETURN_IF_ERROR(cuda::PagedKvWrite(t, k.raw(), v.raw(), rows, kv, d, kpool.raw(), vpool.raw(), stream));
  return cuda::PagedAttentionForward(t, q.raw(), kpool.raw(), vpool.raw(), rows, h, kv, d, att.raw(), stream);
}
#endif

}  // namespace

Allocator* DecodeModel::Alloc() const {
  if (alloc_override_ != nullptr) return alloc_override_;
#ifdef BATON_HAVE_CUDA
  if (model_->device() == Device::kCuda) return DefaultCudaAllocator();
#endif
  return DefaultCpuAllocator();
}

absl::Status DecodeModel::LayerStep(int layer, const DecodeBatch& b, const cpu::PagedRows& dev_rows, Tensor& x) {
  const ModelConfig& c = model_->config();
  const DType dt = model_->dtype();
  const int64_t T = tp_.size();  // heads, kv heads and the ffn are split over tp
  const int64_t N = x.dim(0), C = c.dim, H = c.heads / T, KV = c.kv_heads / T, D = c.head_dim(), F = c.ffn_dim / T;
  const std::string p = absl::StrCat("layers.", layer, ".");
  Tensor& kpool = cache_->k(layer - model_->slice().first_layer);
  Tensor& vpool = cache_->v(layer - model_->slice().first_layer);
  auto bias = [&](const char* name) -> const Tensor* {
    Param* param = model_->FindParam(p + name);
    return param != nullptr ? &(param->compute.defined() ? param->compute : param->value) : nullptr;
  };
  Allocator* a = Alloc();
  Tensor ln = Tensor::Empty({N, C}, dt, a), rstd = Tensor::Empty({N}, StatDType(), a);
  BATON_RETURN_IF_ERROR(ops::RmsNorm(x, Weight(p + "attn_norm"), c.norm_eps, ln, rstd));
  Tensor q = Tensor::Empty({N, H * D}, dt, a), k = Tensor::Empty({N, KV * D}, dt, a), v = Tensor::Empty({N, KV * D}, dt, a);
  BATON_RETURN_IF_ERROR(ops::Linear(ln, Weight(p + "attn.wq"), bias("attn.bq"), q));
  BATON_RETURN_IF_ERROR(ops::Linear(ln, Weight(p + "attn.wk"), bias("attn.bk"), k));
  BATON_RETURN_IF_ERROR(ops::Linear(ln, Weight(p + "attn.wv"), bias("attn.bv"), v));
  Tensor att = Tensor::Empty({N, H * D}, dt, a);
  if (model_->device() != Device::kCpu) {
#ifdef BATON_HAVE_CUDA
    BATON_RETURN_IF_ERROR(PagedAttentionStepCuda(dev_rows, q, k, v, kpool, vpool, c.rope(), H, KV, D, att));
#endif
  } else if (dt == DType::kF64) {
    PagedAttentionStep<double>(b, cache_->block_size(), q, k, v, kpool, vpool, c.rope(), H, KV, D, att);
  } else {
    BATON_CHECK_MSG(dt == DType::kF32, DTypeName(dt));
    PagedAttentionStep<float>(b, cache_->block_size(), q, k, v, kpool, vpool, c.rope(), H, KV, D, att);
  }
  Tensor proj = Tensor::Empty({N, C}, dt, a), h = Tensor::Empty({N, C}, dt, a);
  BATON_RETURN_IF_ERROR(ops::Linear(att, Weight(p + "attn.wo"), nullptr, proj));
  BATON_RETURN_IF_ERROR(tp_.AllReduceSum(proj));  // row-parallel wo: partial sums
  BATON_RETURN_IF_ERROR(ops::AddRmsNorm(x, proj, Weight(p + "mlp_norm"), c.norm_eps, h, ln, rstd));
  Tensor gate = Tensor::Empty({N, F}, dt, a), up = Tensor::Empty({N, F}, dt, a), swi = Tensor::Empty({N, F}, dt, a);
  BATON_RETURN_IF_ERROR(ops::Linear(ln, Weight(p + "mlp.w_gate"), nullptr, gate));
  BATON_RETURN_IF_ERROR(ops::Linear(ln, Weight(p + "mlp.w_up"), nullptr, up));
  BATON_RETURN_IF_ERROR(ops::SwiGlu(gate, up, swi));
  BATON_RETURN_IF_ERROR(ops::Linear(swi, Weight(p + "mlp.w_down"), nullptr, proj));
  BATON_RETURN_IF_ERROR(tp_.AllReduceSum(proj));
  BATON_RETURN_IF_ERROR(ops::Add(h, proj, x));
  return absl::OkStatus();
}

absl::Status DecodeModel::CheckBatch(const DecodeBatch& b) const {
  const int64_t N = b.rows();
  if (N == 0) return absl::InvalidArgumentError("DecodeModel::Forward: an empty batch");
  if (b.block_tables.empty()) return absl::InvalidArgumentError("DecodeModel::Forward: DecodeBatch::Finish not called");
  for (int64_t i = 0; i < N; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token ", b.tokens[i], " at row ", i, " is outside the vocabulary [0, ",
                                                     config().vocab_size, ")"));
    }
    const int64_t block = b.row_pos[i] / cache_->block_size();
    if (b.row_pos[i] < 0 || block >= b.max_blocks || b.block_tables[b.row_seq[i] * b.max_blocks + block] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("row ", i, " at position ", b.row_pos[i], " has no cache block"));
    }
  }
  return absl::OkStatus();
}

cpu::PagedRows DecodeModel::Rows(const DecodeBatch& b, Tensor& tokens, Tensor& ints) const {
  const int64_t N = b.rows();
  tokens = Tensor::Borrow(const_cast<int32_t*>(b.tokens.data()), {N}, DType::kI32);
  cpu::PagedRows rows{b.block_tables.data(), b.max_blocks, b.row_seq.data(), b.row_pos.data(), N,
                      cache_->block_size()};
  if (model_->device() == Device::kCpu) return rows;
  // On a GPU the step's integers travel in one copy: tokens, tables, row_seq, row_pos.
  std::vector<int32_t> packed(b.tokens);
  packed.insert(packed.end(), b.block_tables.begin(), b.block_tables.end());
  packed.insert(packed.end(), b.row_seq.begin(), b.row_seq.end());
  packed.insert(packed.end(), b.row_pos.begin(), b.row_pos.end());
  ints = Tensor::Empty({static_cast<int64_t>(packed.size())}, DType::kI32, Alloc());
  ints.CopyFrom(Tensor::Borrow(packed.data(), ints.shape(), DType::kI32));
  int32_t* base = ints.data<int32_t>();
  tokens = ints.Slice(0, N);
  rows.block_tables = base + N;
  rows.row_seq = rows.block_tables + b.block_tables.size();
  rows.row_pos = rows.row_seq + N;
  return rows;
}

absl::StatusOr<Tensor> DecodeModel::Forward(const DecodeBatch& b) {
  if (!model_->is_whole()) return absl::FailedPreconditionError("DecodeModel::Forward needs the whole model (pp=1)");
#ifdef BATON_HAVE_CUDA
  if (graphs_ != nullptr && !tp_.active() && graphs_->Fits(b)) {
    BATON_RETURN_IF_ERROR(CheckBatch(b));
    return graphs_->Forward(b, [&](const Tensor& tokens, const cpu::PagedRows& rows, const int32_t* logit_rows,
                                   Allocator* alloc, Tensor* logits_out) -> absl::StatusOr<Tensor> {
      alloc_override_ = alloc;
      absl::StatusOr<Tensor> out = Run(b, tokens, rows, logit_rows, tokens.dim(0), logits_out);
      alloc_override_ = nullptr;
      return out;
    });
  }
#endif
  return ForwardPart(b, nullptr, nullptr);
}

absl::StatusOr<Tensor> DecodeModel::ForwardPart(const DecodeBatch& b, const Tensor* input, Tensor* output) {
  const ModelConfig& c = config();
  const ModelSlice& slice = model_->slice();
  BATON_RETURN_IF_ERROR(CheckBatch(b));
  const int64_t N = b.rows();
  if ((input == nullptr) != slice.embedding || (output == nullptr) != slice.head) {
    return absl::InvalidArgumentError("DecodeModel::ForwardPart: input is for a part without the embedding, "
                                      "output for a part without the head");
  }
  Tensor tokens, ints;
  const cpu::PagedRows dev_rows = Rows(b, tokens, ints);
  Tensor x = Tensor::Empty({N, int64_t{c.dim}}, dtype(), Alloc());
  if (input == nullptr) {  // vocab-parallel embedding: each rank fills the rows of its ids, the sum has them all
    BATON_RETURN_IF_ERROR(ops::Embedding(tokens, Weight("embed"), int64_t{c.vocab_size} / tp_.size() * tp_.rank(), x));
    BATON_RETURN_IF_ERROR(tp_.AllReduceSum(x));
  } else {
    x.CopyFrom(*input);
  }
  for (int l = slice.first_layer; l < slice.last_layer; ++l) BATON_RETURN_IF_ERROR(LayerStep(l, b, dev_rows, x));
  if (output != nullptr) {
    output->CopyFrom(x);
    return Tensor();
  }
  return Head(b, x);
}

absl::StatusOr<Tensor> DecodeModel::Head(const DecodeBatch& b, const Tensor& x) {
  const ModelConfig& c = config();
  const DType dt = dtype();
  Allocator* a = Alloc();
  // The head on the rows asked for only: prefill rows but the last need no logits.
  const int64_t R = static_cast<int64_t>(b.logit_rows.size()), R1 = std::max<int64_t>(R, 1);
  Tensor picked = Tensor::Empty({R1, int64_t{c.dim}}, dt, a);
  for (int64_t r = 0; r < R; ++r) picked.Slice(r, 1).CopyFrom(x.Slice(b.logit_rows[r], 1));
  Tensor ln = Tensor::Empty(picked.shape(), dt, a), rstd = Tensor::Empty({R1}, StatDType(), a);
  BATON_RETURN_IF_ERROR(ops::RmsNorm(picked, Weight("final_norm"), c.norm_eps, ln, rstd));
  const Tensor& head = model_->FindParam("lm_head") != nullptr ? Weight("lm_head") : Weight("embed");
  const int64_t T = tp_.size(), Vl = int64_t{c.vocab_size} / T;
  Tensor local = Tensor::Empty({R1, Vl}, dt, a);
  BATON_RETURN_IF_ERROR(ops::Linear(ln, head, nullptr, local));
  Tensor logits = local;
  const bool all_greedy = R > 0 && static_cast<int64_t>(b.greedy.size()) == R &&
                          std::all_of(b.greedy.begin(), b.greedy.end(), [](uint8_t g) { return g != 0; });
  if (tp_.active() && all_greedy && model_->device() == Device::kCpu) {
    BATON_ASSIGN_OR_RETURN(logits, ShardedArgmax(local));
  } else if (tp_.active()) {
    // gathered (T·R1, Vl): rank t's rows in block t; logits (R1, V) viewed as
    // (R1·T, Vl) has row i·T + t = row i's columns of rank t.
    Tensor gathered = Tensor::Empty({T * R1, Vl}, dt, a);
    BATON_RETURN_IF_ERROR(tp_.AllGather(local, gathered));
    logits = Tensor::Empty({R1, int64_t{c.vocab_size}}, dt, a);
    Tensor view = logits.Reshape({R1 * T, Vl});
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < R1; ++i) view.Slice(i * T + t, 1).CopyFrom(gathered.Slice(t * R1 + i, 1));
    }
  }
  return R > 0 ? logits : logits.Slice(0, 0);
}

// The graph body: the whole model at tp = 1 on padded rows (runtime/decode_graph.h),
// the logit rows picked by one gather on the device.
absl::StatusOr<Tensor> DecodeModel::Run(const DecodeBatch& b, const Tensor& tokens, const cpu::PagedRows& dev_rows,
                                        const int32_t* dev_logit_rows, int64_t R, Tensor* logits_out) {
  const ModelConfig& c = model_->config();
  const DType dt = model_->dtype();
  Allocator* a = Alloc();
  Tensor x = Tensor::Empty({tokens.dim(0), int64_t{c.dim}}, dt, a);
  BATON_RETURN_IF_ERROR(ops::Embedding(tokens, Weight("embed"), 0, x));
  for (int l = 0; l < c.layers; ++l) BATON_RETURN_IF_ERROR(LayerStep(l, b, dev_rows, x));
  // The head on the rows asked for only: prefill rows but the last need no logits.
  Tensor picked = Tensor::Empty({std::max<int64_t>(R, 1), int64_t{c.dim}}, dt, a);
  if (model_->device() == Device::kCpu) {
    for (int64_t r = 0; r < R; ++r) picked.Slice(r, 1).CopyFrom(x.Slice(b.logit_rows[r], 1));
  } else {
#ifdef BATON_HAVE_CUDA
    BATON_RETURN_IF_ERROR(cuda::GatherRows(dt == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32, x.raw(),
                                           dev_logit_rows, R, c.dim, picked.raw(), cuda::CurrentStream()));
#endif
  }
  Tensor ln = Tensor::Empty(picked.shape(), dt, a), rstd = Tensor::Empty({picked.dim(0)}, StatDType(), a);
  BATON_RETURN_IF_ERROR(ops::RmsNorm(picked, Weight("final_norm"), c.norm_eps, ln, rstd));
  const Tensor& head = model_->FindParam("lm_head") != nullptr ? Weight("lm_head") : Weight("embed");
  Tensor logits = logits_out != nullptr && logits_out->defined()
                      ? *logits_out
                      : Tensor::Empty({picked.dim(0), int64_t{c.vocab_size}}, dt, a);
  if (logits_out != nullptr) *logits_out = logits;
  BATON_RETURN_IF_ERROR(ops::Linear(ln, head, nullptr, logits));
  return logits;
}

namespace {

template <typename T>
void LocalArgmax(const Tensor& local, int64_t vocab_start, Tensor& pairs) {
  const int64_t R = local.dim(0), Vl = local.dim(1);
  for (int64_t i = 0; i < R; ++i) {
    const T* row = local.data<T>() + i * Vl;
    const int64_t j = std::max_element(row, row + Vl) - row;  // the first of equal maxima
    pairs.data<double>()[2 * i] = static_cast<double>(row[j]);
    pairs.data<double>()[2 * i + 1] = static_cast<double>(vocab_start + j);
  }
}

template <typename T>
void OneHotRows(const Tensor& gathered, int64_t tp, Tensor& out) {
  const int64_t R = out.dim(0), V = out.dim(1);
  std::fill(out.data<T>(), out.data<T>() + R * V, -std::numeric_limits<T>::infinity());
  for (int64_t i = 0; i < R; ++i) {
    int64_t best = 0;  // ranks in vocabulary order: a strictly larger max wins, so ties keep the lowest id
    for (int64_t t = 1; t < tp; ++t) {
      if (gathered.data<double>()[2 * (t * R + i)] > gathered.data<double>()[2 * (best * R + i)]) best = t;
    }
    const double* p = gathered.data<double>() + 2 * (best * R + i);
    out.data<T>()[i * V + static_cast<int64_t>(p[1])] = static_cast<T>(p[0]);
  }
}

}  // namespace

absl::StatusOr<Tensor> DecodeModel::ShardedArgmax(const Tensor& local) {
  const int64_t R = local.dim(0), T = tp_.size(), V = config().vocab_size;
  Tensor pairs = Tensor::Empty({R, 2}, DType::kF64), gathered = Tensor::Empty({T * R, 2}, DType::kF64);
  const int64_t start = V / T * tp_.rank();
  Tensor out = Tensor::Empty({R, V}, local.dtype());
  if (local.dtype() == DType::kF64) {
    LocalArgmax<double>(local, start, pairs);
  } else {
    LocalArgmax<float>(local, start, pairs);
  }
  BATON_RETURN_IF_ERROR(tp_.AllGather(pairs, gathered));
  if (local.dtype() == DType::kF64) {
    OneHotRows<double>(gathered, T, out);
  } else {
    OneHotRows<float>(gathered, T, out);
  }
  return out;
}

}  // namespace baton

namespace baton {

std::vector<int32_t> GreedyTokens(const Tensor& logits) {
  const int64_t R = logits.dim(0), V = logits.dim(1);
  std::vector<int32_t> ids(static_cast<size_t>(R));
#ifdef BATON_HAVE_CUDA
  if (logits.device() == Device::kCuda) {
    Tensor d = Tensor::Empty({R}, DType::kI32, DefaultCudaAllocator());
    const absl::Status st =
        cuda::ArgmaxRows(logits.dtype() == DType::kBF16 ? cuda::Float::kBF16 : cuda::Float::kF32, logits.raw(), R, V,
                         d.data<int32_t>(), cuda::CurrentStream());
    BATON_CHECK_MSG(st.ok(), st.ToString().c_str());
    Tensor host = Tensor::Borrow(ids.data(), {R}, DType::kI32);
    host.CopyFrom(d);
    return ids;
  }
#endif
  SamplingParams greedy;
  greedy.temperature = 0;
  return SampleTokens(logits, std::vector<SamplingParams>(static_cast<size_t>(R), greedy),
                      std::vector<int64_t>(static_cast<size_t>(R), 0));
}

Tensor LogitsOnHost(const Tensor& logits) {
  if (logits.device() == Device::kCpu) return logits;
  Tensor host = logits.Clone(DefaultCpuAllocator());
  if (host.dtype() != DType::kBF16) return host;
#ifdef BATON_HAVE_CUDA
  Tensor f32 = Tensor::Empty(host.shape(), DType::kF32);
  cpu::Bf16ToF32(static_cast<const uint16_t*>(host.raw()), host.numel(), f32.data<float>());
  return f32;
#else
  return host;
#endif
}

}  // namespace baton
