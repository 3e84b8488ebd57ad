// CUDA graphs for the decode step (see decode_graph.h).
#include "runtime/decode_graph.h"

#include <algorithm>
#include <new>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#endif

namespace baton {

int64_t DecodeGraphBucket(int64_t n) {
  int64_t b = 1;
  while (b < n) b *= 2;
  return b;
}

DecodeGraphLayout DecodeGraphLayoutFor(const DecodeBatch& b, int64_t max_rows) {
  const int64_t sequences = static_cast<int64_t>(b.block_tables.size()) / std::max<int64_t>(b.max_blocks, 1);
  const int64_t need = std::max({b.rows(), sequences, static_cast<int64_t>(b.logit_rows.size())});
  DecodeGraphLayout l;
  if (need < 1 || need > max_rows || b.max_blocks < 1) return l;
  l.rows = DecodeGraphBucket(need);
  l.width = DecodeGraphBucket(b.max_blocks);
  return l;
}

std::vector<int32_t> PackDecodeGraphInputs(const DecodeBatch& b, const DecodeGraphLayout& l) {
  std::vector<int32_t> out(static_cast<size_t>(l.size()), 0);
  const int64_t n = b.rows(), sequences = static_cast<int64_t>(b.block_tables.size()) / b.max_blocks;
  BATON_CHECK(n <= l.rows && sequences <= l.rows && b.max_blocks <= l.width &&
              static_cast<int64_t>(b.logit_rows.size()) <= l.rows);
  std::copy(b.tokens.begin(), b.tokens.end(), out.begin() + l.tokens());
  std::fill(out.begin() + l.tables(), out.begin() + l.row_seq(), -1);
  for (int64_t s = 0; s < sequences; ++s) {
    std::copy(b.block_tables.begin() + s * b.max_blocks, b.block_tables.begin() + (s + 1) * b.max_blocks,
              out.begin() + l.tables() + s * l.width);
  }
  std::copy(b.row_seq.begin(), b.row_seq.end(), out.begin() + l.row_seq());
  std::fill(out.begin() + l.row_pos(), out.begin() + l.logit_rows(), -1);
  std::copy(b.row_pos.begin(), b.row_pos.end(), out.begin() + l.row_pos());
  std::copy(b.logit_rows.begin(), b.logit_rows.end(), out.begin() + l.logit_rows());
  return out;
}

#ifdef BATON_HAVE_CUDA

namespace {

// Device memory the graphs bake in: never handed back to the caching
// allocator while a graph may replay. Freed blocks are reused by later
// captures, which is safe because every graph runs on one stream, in order,
// and a captured stream is a chain (no two kernels of a graph overlap).
class GraphArena final : public Allocator {
 public:
  ~GraphArena() override {
    cudaDeviceSynchronize();
    for (void* p : owned_) cudaFree(p);
  }
  void* Allocate(size_t bytes) override {
    const size_t size = CudaCachingAllocator::RoundSize(bytes);
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= 2 * size) {
      void* p = it->second;
      sizes_[p] = it->first;
      free_.erase(it);
      return p;
    }
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, size);  // allowed in a relaxed capture
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw std::bad_alloc();
    }
    owned_.push_back(p);
    sizes_[p] = size;
    return p;
  }
  void Free(void* ptr, size_t) override {
    if (ptr == nullptr) return;
    auto it = sizes_.find(ptr);
    BATON_CHECK_MSG(it != sizes_.end(), "GraphArena::Free of a pointer it does not own");
    free_.emplace(it->second, ptr);
    sizes_.erase(it);
  }
  Device device() const override { return Device::kCuda; }

 private:
  std::vector<void*> owned_;
  std::multimap<size_t, void*> free_;
  std::map<void*, size_t> sizes_;
};

cudaStream_t AsStream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

struct DecodeGraphs::Entry {
  DecodeGraphLayout layout;
  Tensor inputs;  // packed integers (layout.size()), device
  Tensor logits;  // the graph's output (rows, V)
  cudaGraphExec_t exec = nullptr;
  bool seen = false;    // ran once eagerly
  bool failed = false;  // capture or launch failed: eager for good
  ~Entry() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
  cpu::PagedRows Rows(int64_t block_size) const {
    int32_t* base = const_cast<Tensor&>(inputs).data<int32_t>();
    return cpu::PagedRows{base + layout.tables(), layout.width, base + layout.row_seq(), base + layout.row_pos(),
                          layout.rows, block_size};
  }
};

DecodeGraphs::DecodeGraphs(int64_t max_rows, int64_t block_size)
    : max_rows_(max_rows), block_size_(block_size), arena_(std::make_unique<GraphArena>()) {}

DecodeGraphs::~DecodeGraphs() {
  entries_.clear();
  if (own_stream_ != nullptr) cudaStreamDestroy(AsStream(own_stream_));
}

int64_t DecodeGraphs::captured() const {
  int64_t n = 0;
  for (const auto& [key, e] : entries_) n += e->exec != nullptr ? 1 : 0;
  return n;
}

absl::Status DecodeGraphs::Capture(Entry& e, const DecodeGraphBody& body) {
  const cudaStream_t stream = cuda::CurrentStream();
  const int32_t* base = e.inputs.data<int32_t>();
  BATON_CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  absl::StatusOr<Tensor> out = absl::ResourceExhaustedError("out of device memory while capturing a decode step");
  try {  // the capture must end whatever happens inside it
    out = body(e.inputs.Slice(0, e.layout.rows), e.Rows(block_size_), base + e.layout.logit_rows(), arena_.get(),
               &outputs_[e.layout.rows]);
  } catch (const std::bad_alloc&) {
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (!out.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return out.status();
  }
  BATON_CHECK_CUDA(end);
  const cudaError_t inst = cudaGraphInstantiate(&e.exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) e.exec = nullptr;
  BATON_CHECK_CUDA(inst);
  e.logits = *std::move(out);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> DecodeGraphs::Forward(const DecodeBatch& b, const DecodeGraphBody& body) {
  const DecodeGraphLayout layout = DecodeGraphLayoutFor(b, max_rows_);
  if (layout.rows == 0) return absl::InvalidArgumentError("DecodeGraphs::Forward: the batch fits no bucket");
  std::unique_ptr<Entry>& slot = entries_[{layout.rows, layout.width}];
  if (slot == nullptr) {
    slot = std::make_unique<Entry>();
    slot->layout = layout;
    slot->inputs = Tensor::Empty({layout.size()}, DType::kI32, DefaultCudaAllocator());
  }
  Entry& e = *slot;
  // A graph cannot be captured on the legacy default stream: run on our own
  // (blocking, so ordered with the legacy stream both ways).
  const cudaStream_t caller = cuda::CurrentStream();
  if (caller == nullptr && own_stream_ == nullptr) {
    cudaStream_t s = nullptr;
    BATON_CHECK_CUDA(cudaStreamCreate(&s));
    own_stream_ = s;
  }
  const cudaStream_t stream = caller != nullptr ? caller : AsStream(own_stream_);
  const std::vector<int32_t> packed = PackDecodeGraphInputs(b, layout);
  // Pageable source: staged at once, no stream sync; ordered after the last replay.
  BATON_CHECK_CUDA(cudaMemcpyAsync(e.inputs.raw(), packed.data(), packed.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream));
  cuda::SetCurrentStream(stream);
  const int32_t* base = e.inputs.data<int32_t>();
  auto eager = [&]() { return body(e.inputs.Slice(0, layout.rows), e.Rows(block_size_), base + layout.logit_rows(),
                                   DefaultCudaAllocator(), nullptr); };
  absl::StatusOr<Tensor> logits = absl::UnknownError("unset");
  if (!e.seen || e.failed) {  // eager first: cuBLASLt plans (and autotuning) happen outside the capture
    e.seen = true;
    logits = eager();
  } else {
    absl::Status st = e.exec == nullptr ? Capture(e, body) : absl::OkStatus();
    if (st.ok()) {
      const cudaError_t launch = cudaGraphLaunch(e.exec, stream);
      if (launch != cudaSuccess) {
        st = absl::InternalError(absl::StrCat("cudaGraphLaunch: ", cudaGetErrorString(launch)));
      }
    }
    if (st.ok()) {
      logits = e.logits;
    } else {
      // A device or driver that rejects the capture: this bucket runs eagerly
      // from now on (the step is redone; nothing of it ran). failures() tells.
      cudaGetLastError();
      e.failed = true;
      ++failures_;
      last_failure_ = st;
      logits = eager();
    }
  }
  cuda::SetCurrentStream(caller);
  if (!logits.ok()) return logits.status();
  return logits->Slice(0, static_cast<int64_t>(b.logit_rows.size()));
}

#endif  // BATON_HAVE_CUDA

}  // namespace baton
