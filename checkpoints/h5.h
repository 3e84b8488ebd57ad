// HDF5 plumbing for checkpoints/: an RAII owner for HDF5 ids and the one
// place where HDF5 failures (herr_t or hid_t < 0) become absl::Status,
// carrying the call, the file being worked on, file:line and the innermost
// message from HDF5's error stack. HDF5's own printing of errors to stderr
// is switched off (Hdf5Init), because library code never prints.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/tensor.h"
#include "kernels/check.h"

namespace baton {

// Idempotent; call before any other HDF5 call.
void Hdf5Init();

// OK if code >= 0, else an error "EXPR failed on FILE: HDF5 MESSAGE (SRC:LINE)".
absl::Status FromHdf5(int64_t code, const char* expr, const std::string& file, const char* src, int line);

#define BATON_CHECK_H5(expr, file) \
  BATON_RETURN_IF_ERROR(::baton::FromHdf5((expr), #expr, (file), __FILE__, __LINE__))

// Owns an hid_t and closes it with the matching H5?close.
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Id(H5Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() { Reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports failure (H5Fclose at the end of a write matters).
  herr_t Close() {
    herr_t r = id_ >= 0 ? close_(id_) : 0;
    id_ = H5I_INVALID_HID;
    return r;
  }
  void Reset() { Close(); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Opens/creates an id and returns an owner, or the error: BATON_H5_ASSIGN(H5Id f, H5Fopen(...), H5Fclose, path)
#define BATON_H5_ASSIGN(lhs, expr, closer, file) \
  BATON_H5_ASSIGN_IMPL_(BATON_CONCAT_(baton_h5_id_, __LINE__), lhs, expr, #expr, closer, file)
#define BATON_H5_ASSIGN_IMPL_(tmp, lhs, expr, text, closer, file)                   \
  hid_t tmp = (expr);                                                              \
  BATON_RETURN_IF_ERROR(::baton::FromHdf5(tmp, text, (file), __FILE__, __LINE__)); \
  lhs(tmp, closer)

// ---- pieces both checkpoint writers use (checkpoint.cc, dist_checkpoint_write.cc, _read.cc)

// Tensor names become HDF5 paths ("adam/m/x" is dataset "x" in group /adam/m);
// empty, "." and ".." components are refused.
absl::Status CheckName(const std::string& name);
absl::StatusOr<hid_t> FileType(DType t);  // f32/f64/i32 as little-endian file types
hid_t MemoryType(DType t);
absl::StatusOr<DType> DTypeOfFileType(hid_t type);
H5Id Dataspace(const Shape& shape);
// Variable-length UTF-8 string attributes.
absl::Status WriteStringAttr(hid_t obj, const std::string& key, const std::string& value, const std::string& file);
absl::StatusOr<std::string> ReadStringAttr(hid_t attr, const std::string& key, const std::string& file);
absl::Status FsyncPath(const std::string& path, bool directory);
std::string DirOf(const std::string& path);

// `dset` stores exactly the bytes `shape` x `dtype` needs (a second line of
// defence after h5_layout_check: the reader allocates that much). The
// error names neither tensor nor file: callers add both.
absl::Status CheckStoredBytes(hid_t dset, const Shape& shape, DType dtype);

// The file dataspace of `dset` with the block at `start` of extent `count`
// selected (both empty for a scalar: all of it).
absl::StatusOr<H5Id> SelectBlock(hid_t dset, const Shape& start, const Shape& count, const std::string& file);

// ---- the checkpoint file's root (checkpoint.h's layout), shared by the
// single-process and distributed readers and writers so they cannot drift

// Writes the step, the format tag and one string attribute per entry;
// "step" and "format" as keys are InvalidArgument.
absl::Status WriteCheckpointAttrs(hid_t root, int64_t step, const std::map<std::string, std::string>& attrs,
                                  const std::string& file);
// Reads them back (format checked; it is not returned among `attrs`).
// A file without them is InvalidArgument "not a baton checkpoint".
absl::Status ReadCheckpointAttrs(hid_t root, const std::string& file, int64_t* step,
                                 std::map<std::string, std::string>* attrs);
// Before opening: NotFound "checkpoint PATH: No such file or directory",
// InvalidArgument for a directory, a file that is not HDF5, or one whose
// HDF5 metadata is damaged or foreign (h5_layout_check.h: HDF5 itself
// would hang or ask for absurd memory on some of those).
absl::Status CheckCheckpointFile(const std::string& path);
// Opens a checkpoint file read-only (after CheckCheckpointFile): a file
// HDF5 cannot open (truncated, damaged) is one InvalidArgument line naming
// it and HDF5's reason, e.g. "checkpoint PATH: a truncated or damaged HDF5
// file (truncated file: eof = 4096, ...)". `fapl`: H5P_DEFAULT or an MPI-IO one.
absl::StatusOr<H5Id> OpenCheckpointForRead(const std::string& path, hid_t fapl);
// Every dataset's path ("params/embed"), at any depth, sorted.
absl::StatusOr<std::vector<std::string>> ListDatasets(hid_t root, const std::string& file);

}  // namespace baton
