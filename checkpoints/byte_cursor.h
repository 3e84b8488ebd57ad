// Bounds-checked little-endian decoding of a block of bytes read from an
// untrusted file (h5_layout_check.cc reads HDF5 metadata with it). A read
// past the end makes the cursor not ok() and returns 0, so a decoder can
// read a whole record and check ok() once.
#pragma once

#include <cstddef>
#include <cstdint>

namespace baton {

class ByteCursor {
 public:
  ByteCursor(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  size_t left() const { return ok_ ? n_ - pos_ : 0; }
  const uint8_t* here() const { return p_ + pos_; }
  uint64_t U(int bytes) {
    if (!Has(bytes)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{p_[pos_ + i]} << (8 * i);
    pos_ += bytes;
    return v;
  }
  void Skip(uint64_t bytes) {
    if (Has(bytes)) pos_ += bytes;
  }
  void Seek(size_t pos) { pos <= n_ ? void(pos_ = pos) : void(ok_ = false); }

 private:
  bool Has(uint64_t bytes) {
    if (ok_ && bytes <= n_ - pos_) return true;
    ok_ = false;
    return false;
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace baton
