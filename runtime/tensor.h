// Tensor: a typed, strided view of memory on one device. Every buffer the
// model, optimizer and communicators touch is a Tensor; ops (runtime/ops.h)
// take Tensors, check shape/dtype/device at the entry and dispatch to the
// raw-pointer kernels in kernels/. A Tensor is either owning (holds a
// shared Storage) or a view sharing another's Storage; copies are cheap
// handles, never deep copies (use Clone for that).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kernels/check.h"

namespace baton {

// f64 exists for the reference backend's tests (finite differences in double).
enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kF64 };
enum class Device : uint8_t { kCpu, kCuda };

size_t DTypeSize(DType t);
const char* DTypeName(DType t);
const char* DeviceName(Device d);

template <typename T> constexpr DType DTypeOf();
template <> constexpr DType DTypeOf<float>() { return DType::kF32; }
template <> constexpr DType DTypeOf<double>() { return DType::kF64; }
template <> constexpr DType DTypeOf<int32_t>() { return DType::kI32; }

// Where bytes come from. CPU: 64-byte aligned heap (default) or an arena;
// CUDA: the caching allocator (CUDA issue).
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* Allocate(size_t bytes) = 0;
  virtual void Free(void* ptr, size_t bytes) = 0;
  virtual Device device() const = 0;
};

Allocator* DefaultCpuAllocator();

// Bump allocator over large blocks: activations of one step come from here
// and are released together by Reset(). Free() of one buffer is a no-op.
class CpuArena final : public Allocator {
 public:
  explicit CpuArena(size_t block_bytes = size_t{64} << 20);
  ~CpuArena() override;
  void* Allocate(size_t bytes) override;
  void Free(void*, size_t) override {}
  Device device() const override { return Device::kCpu; }
  void Reset();                       // every pointer handed out becomes invalid
  size_t bytes_in_use() const { return in_use_; }
  size_t bytes_peak() const { return peak_; }

 private:
  struct Block { char* data; size_t size; size_t used; };
  std::vector<Block> blocks_;
  size_t block_bytes_;
  size_t in_use_ = 0, peak_ = 0;
};

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Allocator* allocator = nullptr;  // null: borrowed memory, not freed
  ~Storage();
};

using Shape = std::vector<int64_t>;

class Tensor {
 public:
  Tensor() = default;

  static Tensor Empty(const Shape& shape, DType dtype, Allocator* alloc = DefaultCpuAllocator());
  static Tensor Zeros(const Shape& shape, DType dtype, Allocator* alloc = DefaultCpuAllocator());
  // Wraps memory the caller keeps alive (mmap'd files, MPI buffers).
  static Tensor Borrow(void* data, const Shape& shape, DType dtype, Device device = Device::kCpu);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }  // in elements
  int64_t dim(int i) const { return shape_[i < 0 ? i + rank() : i]; }
  int rank() const { return static_cast<int>(shape_.size()); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  bool is_contiguous() const;

  void* raw() const { return static_cast<char*>(storage_->data) + offset_ * DTypeSize(dtype_); }
  template <typename T> T* data() const {
    BATON_CHECK_MSG(dtype_ == DTypeOf<T>(), DTypeName(dtype_));
    return static_cast<T*>(raw());
  }

  // Views share storage. Reshape needs a contiguous tensor.
  Tensor Reshape(const Shape& shape) const;
  Tensor Slice(int64_t start, int64_t length) const;  // along dim 0
  Tensor Clone(Allocator* alloc = nullptr) const;      // deep, contiguous copy
  void CopyFrom(const Tensor& src);                     // same shape & dtype
  void Zero();

  std::string DebugString() const;  // "f32[4, 16] cpu"

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_, strides_;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCpu;
};

std::string ShapeString(const Shape& shape);

}  // namespace baton
