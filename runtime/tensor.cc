// Tensor, storage and the CPU allocators (see tensor.h).
#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#ifdef BATON_HAVE_CUDA
#include "kernels/cuda/copy.h"
#include "kernels/cuda/stream.h"
#include "runtime/cuda_allocator.h"
#endif

namespace baton {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kF64: return 8;
  }
  return 0;
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
    case DType::kF64: return "f64";
  }
  return "?";
}

const char* DeviceName(Device d) { return d == Device::kCpu ? "cpu" : "cuda"; }

namespace {
class AlignedCpuAllocator final : public Allocator {
 public:
  void* Allocate(size_t bytes) override {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void Free(void* ptr, size_t) override { std::free(ptr); }
  Device device() const override { return Device::kCpu; }
};
}  // namespace

Allocator* DefaultCpuAllocator() {
  static AlignedCpuAllocator alloc;
  return &alloc;
}

CpuArena::CpuArena(size_t block_bytes) : block_bytes_(block_bytes) {}

CpuArena::~CpuArena() {
  for (Block& b : blocks_) std::free(b.data);
}

void* CpuArena::Allocate(size_t bytes) {
  size_t need = (bytes + 63) / 64 * 64;
  for (Block& b : blocks_) {
    if (b.size - b.used >= need) {
      void* p = b.data + b.used;
      b.used += need;
      in_use_ += need;
      peak_ = std::max(peak_, in_use_);
      return p;
    }
  }
  size_t size = std::max(need, block_bytes_);
  char* data = static_cast<char*>(std::aligned_alloc(64, size));
  if (data == nullptr) throw std::bad_alloc();
  blocks_.push_back({data, size, need});
  in_use_ += need;
  peak_ = std::max(peak_, in_use_);
  return data;
}

void CpuArena::Reset() {
  for (Block& b : blocks_) b.used = 0;
  in_use_ = 0;
}

Storage::~Storage() {
  if (allocator != nullptr && data != nullptr) allocator->Free(data, bytes);
}

static Shape ContiguousStrides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

Tensor Tensor::Empty(const Shape& shape, DType dtype, Allocator* alloc) {
  Tensor t;
  for (int64_t d : shape) BATON_CHECK_MSG(d >= 0, "negative dimension");
  t.shape_ = shape;
  t.strides_ = ContiguousStrides(shape);
  t.dtype_ = dtype;
  t.device_ = alloc->device();
  t.storage_ = std::make_shared<Storage>();
  t.storage_->bytes = t.nbytes();
  t.storage_->allocator = alloc;
  t.storage_->data = alloc->Allocate(t.storage_->bytes);
  return t;
}

Tensor Tensor::Zeros(const Shape& shape, DType dtype, Allocator* alloc) {
  Tensor t = Empty(shape, dtype, alloc);
  t.Zero();
  return t;
}

Tensor Tensor::Borrow(void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = ContiguousStrides(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->data = data;
  t.storage_->bytes = t.nbytes();
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

bool Tensor::is_contiguous() const { return strides_ == ContiguousStrides(shape_); }

Tensor Tensor::Reshape(const Shape& shape) const {
  BATON_CHECK_MSG(is_contiguous(), "Reshape of a strided view");
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = ContiguousStrides(shape);
  BATON_CHECK_MSG(t.numel() == numel(), (ShapeString(shape_) + " -> " + ShapeString(shape)).c_str());
  return t;
}

Tensor Tensor::Slice(int64_t start, int64_t length) const {
  BATON_CHECK(rank() >= 1 && start >= 0 && length >= 0 && start + length <= shape_[0]);
  Tensor t = *this;
  t.offset_ += start * strides_[0];
  t.shape_[0] = length;
  return t;
}

Tensor Tensor::Clone(Allocator* alloc) const {
#ifdef BATON_HAVE_CUDA
  if (device_ == Device::kCuda) {  // same device, unless alloc says otherwise
    if (alloc == nullptr) {
      alloc = storage_->allocator != nullptr ? storage_->allocator : DefaultCudaAllocator();
    }
    Tensor t = Empty(shape_, dtype_, alloc);
    t.CopyFrom(*this);
    return t;
  }
#endif
  BATON_CHECK_MSG(device_ == Device::kCpu, "Clone of a device tensor: use ops::Copy");
  Tensor t = Empty(shape_, dtype_, alloc != nullptr ? alloc : DefaultCpuAllocator());
  t.CopyFrom(*this);
  return t;
}

void Tensor::CopyFrom(const Tensor& src) {
  BATON_CHECK_MSG(src.shape_ == shape_ && src.dtype_ == dtype_,
                  (src.DebugString() + " -> " + DebugString()).c_str());
#ifdef BATON_HAVE_CUDA
  if (device_ == Device::kCuda || src.device_ == Device::kCuda) {  // any direction, one memcpy
    BATON_CHECK_MSG(is_contiguous() && src.is_contiguous(), "CopyFrom of strided views");
    const absl::Status st =
        cuda::CopyBytes(raw(), device_ == Device::kCuda, src.raw(), src.device_ == Device::kCuda,
                        nbytes(), cuda::CurrentStream());
    BATON_CHECK_MSG(st.ok(), st.ToString().c_str());
    return;
  }
#endif
  BATON_CHECK_MSG(device_ == Device::kCpu && src.device_ == Device::kCpu, "CopyFrom is CPU-only");
  BATON_CHECK_MSG(is_contiguous() && src.is_contiguous(), "CopyFrom of strided views");
  if (nbytes() > 0) std::memmove(raw(), src.raw(), nbytes());
}

void Tensor::Zero() {
#ifdef BATON_HAVE_CUDA
  if (device_ == Device::kCuda) {
    BATON_CHECK(is_contiguous());
    const absl::Status st = cuda::ZeroBytes(raw(), nbytes(), cuda::CurrentStream());
    BATON_CHECK_MSG(st.ok(), st.ToString().c_str());
    return;
  }
#endif
  BATON_CHECK_MSG(device_ == Device::kCpu, "Zero is CPU-only");
  BATON_CHECK(is_contiguous());
  if (nbytes() > 0) std::memset(raw(), 0, nbytes());
}

std::string ShapeString(const Shape& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

std::string Tensor::DebugString() const {
  return absl::StrCat(DTypeName(dtype_), ShapeString(shape_), " ", DeviceName(device_));
}

}  // namespace baton
