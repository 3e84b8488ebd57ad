// The structural walk of a checkpoint's HDF5 metadata (see h5_layout_check.h).
// Each structure is read with pread into a buffer no larger than the file
// (and capped), decoded with bounds-checked little-endian reads, and
// checked against the rules HDF5 1.10 relies on without checking itself.
// Recursion is bounded: object headers are visited once each, and a B-tree
// child must sit exactly one level below its parent.
#include "checkpoints/h5_layout_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoints/byte_cursor.h"
#include "kernels/check.h"

namespace baton {
namespace {

constexpr uint64_t kUndefined = ~uint64_t{0};
constexpr uint64_t kMaxBlock = uint64_t{64} << 20;  // no metadata block baton writes comes near
constexpr int kMaxGroupDepth = 64;
constexpr int kMaxRank = 32;  // HDF5's H5S_MAX_RANK

uint64_t Align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// Little-endian two's complement integers of 1-8 bytes and IEEE f32/f64,
// encoded exactly as HDF5 writes them: HDF5 converts odd encodings bit by
// bit, and that code has overflowed on damaged parameters.
bool StandardNumber(ByteCursor& c, int cls, uint64_t bits, uint64_t size) {
  const uint64_t offset = c.U(2), precision = c.U(2);
  if (!c.ok() || offset != 0 || precision != 8 * size) return false;
  if (cls == 0) return (bits & ~uint64_t{0x08}) == 0 && (size == 1 || size == 2 || size == 4 || size == 8);
  const uint64_t exp_at = c.U(1), exp_bits = c.U(1), mant_at = c.U(1), mant_bits = c.U(1), bias = c.U(4);
  const uint64_t want_bits = 0x20 | ((8 * size - 1) << 8);  // implied mantissa bit, sign at the top
  if (!c.ok() || bits != want_bits || mant_at != 0) return false;
  if (size == 4) return exp_at == 23 && exp_bits == 8 && mant_bits == 23 && bias == 127;
  return size == 8 && exp_at == 52 && exp_bits == 11 && mant_bits == 52 && bias == 1023;
}

// What the messages of one object header said.
struct ObjectInfo {
  int spaces = 0, types = 0, layouts = 0;  // HDF5 uses the first of each: more is damage
  uint64_t npoints = 1;                    // elements in the dataspace (saturated)
  uint64_t type_size = 0;                  // bytes per element
  uint64_t storage = 0;                    // bytes the layout message stores
  uint64_t fill_size = kUndefined;         // a defined fill value's bytes
  std::vector<std::pair<uint64_t, uint64_t>> groups;  // (B-tree, name heap), walked after the header
};

// One global heap collection: object index -> object size.
using HeapObjects = std::map<uint64_t, uint64_t>;

class LayoutWalker {
 public:
  LayoutWalker(std::string path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), limit_(size) {}
  absl::Status Walk();

 private:
  absl::Status Error(const char* kind, const std::string& detail) const {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path_, ": ", kind, " (", detail, ")"));
  }
  absl::Status Damaged(const std::string& what, uint64_t at) const {
    return Error("a truncated or damaged HDF5 file", absl::StrCat(what, " at byte ", at));
  }
  absl::Status Foreign(const std::string& what, uint64_t at) const {
    return Error("an HDF5 layout baton does not write", absl::StrCat(what, " at byte ", at));
  }
  absl::Status Read(uint64_t addr, uint64_t len, const char* what, std::vector<uint8_t>* out);
  absl::Status Superblock(uint64_t* root, std::pair<uint64_t, uint64_t>* cached_group);
  absl::Status ObjectHeader(uint64_t addr, int depth);
  absl::Status Message(int type, ByteCursor c, uint64_t at, ObjectInfo* info);
  absl::Status Datatype(ByteCursor& c, uint64_t at, bool attribute, uint64_t* size, bool* vlen_string);
  absl::Status Dataspace(ByteCursor& c, uint64_t at, uint64_t* npoints);
  absl::Status Attribute(ByteCursor c, uint64_t at);
  absl::Status StringRef(ByteCursor& c, uint64_t at);
  absl::Status GlobalHeap(uint64_t addr, const HeapObjects** objects);
  absl::Status Layout(ByteCursor c, uint64_t at, ObjectInfo* info);
  absl::Status Group(uint64_t btree, uint64_t heap, int depth);
  absl::Status BTreeNode(uint64_t addr, int level, const std::vector<uint8_t>& names, int depth);
  absl::Status SymbolNode(uint64_t addr, const std::vector<uint8_t>& names, int depth);
  absl::Status Name(const std::vector<uint8_t>& names, uint64_t offset, uint64_t at) const;
  absl::Status FreeList(const std::vector<uint8_t>& names, uint64_t block, uint64_t heap) const;

  std::string path_;
  int fd_;
  uint64_t limit_;  // bytes HDF5 may address: min(file size, end-of-file address)
  int leaf_k_ = 0, internal_k_ = 0;
  std::set<uint64_t> headers_seen_, groups_seen_;
  std::map<uint64_t, HeapObjects> heaps_;
};

absl::Status LayoutWalker::Read(uint64_t addr, uint64_t len, const char* what, std::vector<uint8_t>* out) {
  if (addr == kUndefined || addr > limit_ || len > limit_ - addr)
    return Error("a truncated or damaged HDF5 file",
                 absl::StrCat(what, " of ", len, " bytes at byte ", addr, ", past the end at byte ", limit_));
  if (len > kMaxBlock) return Damaged(absl::StrCat(what, " of ", len, " bytes"), addr);
  out->resize(len);
  for (uint64_t done = 0; done < len;) {
    const ssize_t r = ::pread(fd_, out->data() + done, len - done, static_cast<off_t>(addr + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path_, ": read at byte ", addr + done, ": ",
                                                     r < 0 ? std::strerror(errno) : "unexpected end of file"));
    done += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

// Superblock v0/v1 at byte 0 (no user block), 8-byte offsets and lengths.
absl::Status LayoutWalker::Superblock(uint64_t* root, std::pair<uint64_t, uint64_t>* cached_group) {
  std::vector<uint8_t> b;
  BATON_RETURN_IF_ERROR(Read(0, std::min<uint64_t>(limit_, 96), "superblock", &b));
  if (b.size() < 9 || std::memcmp(b.data(), "\x89HDF\r\n\x1a\n", 8) != 0)
    return Foreign("no signature at the start (a user block?)", 0);
  ByteCursor c(b.data(), b.size());
  c.Skip(8);
  const int version = static_cast<int>(c.U(1));
  if (version > 1) return Foreign(absl::StrCat("superblock version ", version), 8);
  c.Skip(4);  // free-space, root symbol table entry and shared header versions, reserved
  if (c.U(1) != 8 || c.U(1) != 8) return Foreign("offsets or lengths not 8 bytes", 13);
  c.Skip(1);
  leaf_k_ = static_cast<int>(c.U(2));
  internal_k_ = static_cast<int>(c.U(2));
  if (leaf_k_ == 0 || internal_k_ == 0) return Damaged("a B-tree rank of 0 in the superblock", 16);
  c.Skip(4);  // consistency flags
  if (version == 1) c.Skip(4);  // indexed storage K, reserved
  const uint64_t base = c.U(8), free_space = c.U(8), eof = c.U(8), driver = c.U(8);
  if (!c.ok()) return Damaged("a truncated superblock", 0);
  if (base != 0) return Foreign("a base address other than 0", 24);
  if (free_space != kUndefined || driver != kUndefined) return Foreign("a free-space or driver block", 32);
  if (eof > limit_)
    return Error("a truncated or damaged HDF5 file",
                 absl::StrCat(limit_, " of the ", eof, " bytes its superblock names"));
  limit_ = eof;
  c.Skip(8);  // root symbol table entry: link name offset
  *root = c.U(8);
  const uint64_t cache_type = c.U(4);
  c.Skip(4);
  const uint64_t btree = c.U(8), heap = c.U(8);
  if (!c.ok()) return Damaged("a truncated superblock", 0);
  // HDF5 may use the cached B-tree and heap addresses instead of the root's stab message.
  if (cache_type == 1) *cached_group = {btree, heap};
  return absl::OkStatus();
}

// A v1 object header: a 16-byte prefix, then chunks of messages linked by
// continuation messages.
absl::Status LayoutWalker::ObjectHeader(uint64_t addr, int depth) {
  if (!headers_seen_.insert(addr).second) return absl::OkStatus();
  std::vector<uint8_t> b;
  BATON_RETURN_IF_ERROR(Read(addr, 16, "an object header", &b));
  if (std::memcmp(b.data(), "OHDR", 4) == 0) return Foreign("a version 2 object header", addr);
  ByteCursor prefix(b.data(), b.size());
  if (prefix.U(1) != 1) return Damaged("an object header of unknown version", addr);
  prefix.Skip(7);  // reserved, message count, reference count
  std::vector<std::pair<uint64_t, uint64_t>> chunks = {{addr + 16, prefix.U(4)}};
  std::set<uint64_t> chunk_addrs;
  ObjectInfo info;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto [at, len] = chunks[i];
    if (chunks.size() > 4096 || !chunk_addrs.insert(at).second) return Damaged("a loop of header continuations", at);
    BATON_RETURN_IF_ERROR(Read(at, len, "an object header chunk", &b));
    ByteCursor c(b.data(), b.size());
    while (c.left() >= 8) {
      const uint64_t msg_at = at + c.pos();
      const int type = static_cast<int>(c.U(2));
      const uint64_t size = c.U(2), flags = c.U(1);
      c.Skip(3);
      if (size > c.left() || size % 8 != 0) return Damaged("a header message running past its chunk", msg_at);
      if (flags & 0x02) return Foreign("a shared header message", msg_at);
      if (type == 0x10) {  // continuation
        ByteCursor m(c.here(), size);
        const uint64_t next = m.U(8), next_len = m.U(8);
        if (!m.ok() || next_len < 8) return Damaged("a bad header continuation", msg_at);
        chunks.emplace_back(next, next_len);
      } else {
        BATON_RETURN_IF_ERROR(Message(type, ByteCursor(c.here(), size), msg_at + 8, &info));
      }
      c.Skip(size);
    }
  }
  // Groups after the header's own messages: HDF5 reads the root's attributes before listing it.
  for (const auto& [btree, heap] : info.groups) BATON_RETURN_IF_ERROR(Group(btree, heap, depth + 1));
  if (info.layouts == 0 && info.spaces + info.types == 0) return absl::OkStatus();
  if (info.layouts != 1 || info.spaces != 1 || info.types != 1)
    return Damaged("a dataset without exactly one dataspace, datatype and layout", addr);
  if (info.fill_size != kUndefined && info.fill_size != 0 && info.fill_size != info.type_size)
    return Damaged(absl::StrCat("a fill value of ", info.fill_size, " bytes for ", info.type_size, "-byte elements"),
                   addr);
  unsigned __int128 need = static_cast<unsigned __int128>(info.npoints) * info.type_size;
  if (need != info.storage)
    return Damaged(absl::StrCat("a dataset of ", info.npoints, " elements of ", info.type_size, " bytes stored in ",
                                info.storage, " bytes"), addr);
  return absl::OkStatus();
}

absl::Status LayoutWalker::Message(int type, ByteCursor c, uint64_t at, ObjectInfo* info) {
  bool unused_vlen = false;
  switch (type) {
    case 0x00: case 0x0D: case 0x0E: case 0x12:  // null, comment, modification times: never decoded here
      return absl::OkStatus();
    case 0x01:
      ++info->spaces;
      return Dataspace(c, at, &info->npoints);
    case 0x03:
      ++info->types;
      return Datatype(c, at, /*attribute=*/false, &info->type_size, &unused_vlen);
    case 0x04: {  // old fill value: size, value
      info->fill_size = c.U(4);
      return c.ok() && info->fill_size <= c.left() ? absl::OkStatus() : Damaged("a fill value past its message", at);
    }
    case 0x05: {  // fill value, versions 1-3
      const uint64_t version = c.U(1);
      bool defined = true;
      if (version == 3) {
        defined = (c.U(1) & 0x20) != 0;
      } else if (version == 1 || version == 2) {
        c.Skip(2);
        defined = version == 1 || c.U(1) != 0;
      } else {
        return Damaged("a fill value message of unknown version", at);
      }
      if (!defined) return c.ok() ? absl::OkStatus() : Damaged("a truncated fill value message", at);
      info->fill_size = c.U(4);
      return c.ok() && info->fill_size <= c.left() ? absl::OkStatus() : Damaged("a fill value past its message", at);
    }
    case 0x08:
      ++info->layouts;
      return Layout(c, at, info);
    case 0x0C:
      return Attribute(c, at);
    case 0x11: {  // symbol table: a group's B-tree and name heap
      const uint64_t btree = c.U(8), heap = c.U(8);
      if (!c.ok()) return Damaged("a truncated symbol table message", at);
      info->groups.emplace_back(btree, heap);
      return absl::OkStatus();
    }
    default:
      return Foreign(absl::StrCat("header message type ", type), at);
  }
}

// Datasets: little-endian integers and IEEE floats of 1-8 bytes. Attributes
// also: fixed-length strings and variable-length strings of bytes.
absl::Status LayoutWalker::Datatype(ByteCursor& c, uint64_t at, bool attribute, uint64_t* size, bool* vlen_string) {
  *vlen_string = false;
  const uint64_t head = c.U(1), bits = c.U(3);
  *size = c.U(4);
  const int cls = static_cast<int>(head & 0x0f), version = static_cast<int>(head >> 4);
  if (!c.ok()) return Damaged("a truncated datatype", at);
  if (version < 1 || version > 3) return Damaged(absl::StrCat("a datatype of version ", version), at);
  if (cls == 0 || (cls == 1 && !attribute)) {
    if (!StandardNumber(c, cls, bits, *size)) return Foreign(absl::StrCat("a non-standard number type (class ", cls,
                                                                         ", ", *size, " bytes)"), at);
  } else if (attribute && cls == 3) {
    if (*size == 0) return Damaged("a string type of 0 bytes", at);
  } else if (attribute && cls == 9 && (bits & 0x0f) == 1) {  // variable-length string
    const uint64_t base_head = c.U(1);
    c.Skip(3);
    const uint64_t base = c.U(4);
    c.Skip(4);
    if ((base_head & 0x0f) != 0 || base != 1) return Foreign("a variable-length string of wide characters", at);
    if (*size != 16) return Damaged(absl::StrCat("a variable-length string of ", *size, " bytes"), at);
    *vlen_string = true;
  } else {
    return Foreign(absl::StrCat("a datatype of class ", cls), at);
  }
  return c.ok() ? absl::OkStatus() : Damaged("a truncated datatype", at);
}

absl::Status LayoutWalker::Dataspace(ByteCursor& c, uint64_t at, uint64_t* npoints) {
  const uint64_t version = c.U(1), rank = c.U(1), flags = c.U(1);
  uint64_t kind = 1;  // simple (v1 rank 0: scalar)
  if (version == 1) {
    c.Skip(5);
  } else if (version == 2) {
    kind = c.U(1);
  } else {
    return Damaged(absl::StrCat("a dataspace of version ", version), at);
  }
  if (rank > kMaxRank || kind > 2) return Damaged(absl::StrCat("a dataspace of rank ", rank), at);
  *npoints = kind == 2 ? 0 : 1;
  for (uint64_t i = 0; i < rank; ++i) {
    const uint64_t d = c.U(8);
    *npoints = (d != 0 && *npoints > kUndefined / d) ? kUndefined : *npoints * d;
  }
  if (flags & 1) c.Skip(8 * rank);
  if (version == 1 && (flags & 2)) c.Skip(8 * rank);
  return c.ok() ? absl::OkStatus() : Damaged("a truncated dataspace", at);
}

// Name, datatype, dataspace, then the data, which must fit in the message
// (HDF5 copies npoints * type size bytes out of it).
absl::Status LayoutWalker::Attribute(ByteCursor c, uint64_t at) {
  const uint64_t version = c.U(1), flags = c.U(1), name_len = c.U(2), type_len = c.U(2), space_len = c.U(2);
  if (version < 1 || version > 3) return Damaged(absl::StrCat("an attribute of version ", version), at);
  if (version >= 2 && (flags & 3)) return Foreign("an attribute with a shared type or space", at);
  if (version == 3) c.Skip(1);  // name character set
  auto padded = [&](uint64_t n) { return version == 1 ? Align8(n) : n; };
  const uint8_t* name = c.here();
  c.Skip(padded(name_len));
  // HDF5 writes the length with the NUL; a shorter name crashes its close (1.10).
  if (!c.ok() || name_len == 0 || std::memchr(name, 0, name_len) != name + name_len - 1)
    return Damaged("an attribute name not of its stated length", at);
  const size_t type_at = c.pos();
  uint64_t type_size = 0, npoints = 0;
  bool vlen_string = false;
  BATON_RETURN_IF_ERROR(Datatype(c, at, /*attribute=*/true, &type_size, &vlen_string));
  if (c.pos() - type_at > type_len) return Damaged("an attribute datatype larger than declared", at);
  c.Seek(type_at + padded(type_len));
  const size_t space_at = c.pos();
  BATON_RETURN_IF_ERROR(Dataspace(c, at, &npoints));
  if (c.pos() - space_at > space_len) return Damaged("an attribute dataspace larger than declared", at);
  c.Seek(space_at + padded(space_len));
  const unsigned __int128 bytes = static_cast<unsigned __int128>(npoints) * type_size;
  if (!c.ok() || bytes > c.left())
    return Damaged(absl::StrCat("an attribute of ", npoints, " x ", type_size, " bytes in a smaller message"), at);
  for (uint64_t i = 0; vlen_string && i < npoints; ++i) BATON_RETURN_IF_ERROR(StringRef(c, at));
  return absl::OkStatus();
}

// One variable-length string: its length, then the global heap object
// holding it, which must exist and be exactly that long (H5HG_read copies
// the whole object into a buffer sized by the length).
absl::Status LayoutWalker::StringRef(ByteCursor& c, uint64_t at) {
  const uint64_t len = c.U(4), heap = c.U(8), index = c.U(4);
  if (!c.ok()) return Damaged("a truncated string reference", at);
  if (len == 0 && (heap == 0 || heap == kUndefined)) return absl::OkStatus();  // an empty or null string
  const HeapObjects* objects = nullptr;
  BATON_RETURN_IF_ERROR(GlobalHeap(heap, &objects));
  auto it = objects->find(index);
  if (index == 0 || it == objects->end()) return Damaged(absl::StrCat("a string in missing heap object ", index), heap);
  if (it->second != len)
    return Damaged(absl::StrCat("a string of ", len, " bytes in a heap object of ", it->second), heap);
  return absl::OkStatus();
}

// A global heap collection ("GCOL"), walked the way HDF5 walks it: object
// records (index, refs, size, data padded to 8), free space as index 0
// whose size covers its own record. A free-space size of 0 is where HDF5
// 1.10 loops forever.
absl::Status LayoutWalker::GlobalHeap(uint64_t addr, const HeapObjects** objects) {
  if (auto it = heaps_.find(addr); it != heaps_.end()) {
    *objects = &it->second;
    return absl::OkStatus();
  }
  std::vector<uint8_t> b;
  BATON_RETURN_IF_ERROR(Read(addr, 16, "a global heap", &b));
  ByteCursor head(b.data(), b.size());
  if (std::memcmp(b.data(), "GCOL", 4) != 0) return Damaged("a string pointing to no global heap", addr);
  head.Skip(8);
  const uint64_t size = head.U(8);
  if (size < 16) return Damaged(absl::StrCat("a global heap of ", size, " bytes"), addr);
  BATON_RETURN_IF_ERROR(Read(addr, size, "a global heap", &b));
  HeapObjects found;
  for (uint64_t p = 16; p < size;) {
    if (size - p < 16) break;  // a tail too small for a record is free space
    ByteCursor c(b.data() + p, size - p);
    const uint64_t index = c.U(2);
    c.Skip(6);
    const uint64_t osize = c.U(8);
    const uint64_t need = index == 0 ? osize : (osize > size ? kUndefined : 16 + Align8(osize));
    if (index == 0 && need < 16) return Damaged(absl::StrCat("global heap free space of ", osize, " bytes"), addr + p);
    if (need > size - p) return Damaged(absl::StrCat("global heap object ", index, " past its heap"), addr + p);
    if (index != 0 && !found.emplace(index, osize).second)
      return Damaged(absl::StrCat("global heap object ", index, " twice"), addr + p);
    p += need;
  }
  *objects = &heaps_.emplace(addr, std::move(found)).first->second;
  return absl::OkStatus();
}

// Layout version 3: compact (data in the message) or contiguous (address, size).
absl::Status LayoutWalker::Layout(ByteCursor c, uint64_t at, ObjectInfo* info) {
  const uint64_t version = c.U(1), cls = c.U(1);
  if (!c.ok()) return Damaged("a truncated layout message", at);
  if (version != 3) return Foreign(absl::StrCat("a layout message of version ", version), at);
  if (cls == 0) {
    info->storage = c.U(2);
    if (!c.ok() || info->storage > c.left()) return Damaged("compact data larger than its message", at);
    return absl::OkStatus();
  }
  if (cls != 1) return Foreign(absl::StrCat("a dataset layout of class ", cls, " (chunked or virtual)"), at);
  const uint64_t addr = c.U(8);
  info->storage = c.U(8);
  if (!c.ok()) return Damaged("a truncated layout message", at);
  if (addr == kUndefined) {  // never written: only an empty dataset
    info->storage = 0;
    return absl::OkStatus();
  }
  if (addr > limit_ || info->storage > limit_ - addr)
    return Damaged(absl::StrCat("dataset data of ", info->storage, " bytes beyond the end of the file"), at);
  return absl::OkStatus();
}

// A symbol-table group: its name heap ("HEAP"), then its B-tree.
absl::Status LayoutWalker::Group(uint64_t btree, uint64_t heap, int depth) {
  if (!groups_seen_.insert(btree).second) return absl::OkStatus();
  if (depth > kMaxGroupDepth) return Foreign(absl::StrCat("groups nested over ", kMaxGroupDepth, " deep"), btree);
  std::vector<uint8_t> b, names;
  BATON_RETURN_IF_ERROR(Read(heap, 32, "a local heap", &b));
  if (std::memcmp(b.data(), "HEAP", 4) != 0 || b[4] != 0) return Damaged("a group without its name heap", heap);
  ByteCursor c(b.data() + 8, 24);
  const uint64_t size = c.U(8), free_list = c.U(8), data = c.U(8);
  BATON_RETURN_IF_ERROR(Read(data, size, "a name heap", &names));
  BATON_RETURN_IF_ERROR(FreeList(names, free_list, heap));
  return BTreeNode(btree, -1, names, depth);
}

// A name heap's free list: (next, size) records inside the heap. HDF5
// follows it without bound, so a cycle would grow memory forever.
absl::Status LayoutWalker::FreeList(const std::vector<uint8_t>& names, uint64_t block, uint64_t heap) const {
  constexpr uint64_t kNone = 1;  // HDF5's H5HL_FREE_NULL
  for (uint64_t steps = 0; block != kNone; ++steps) {
    if (block > names.size() || names.size() - block < 16 || steps > names.size() / 16)
      return Damaged("a name heap free list outside the heap or in a loop", heap);
    ByteCursor c(names.data() + block, 16);
    const uint64_t next = c.U(8), size = c.U(8);
    if (next == 0 || size > names.size() - block) return Damaged("a bad name heap free block", heap);
    block = next;
  }
  return absl::OkStatus();
}

// A name at `offset` in a group's name heap must end inside the heap.
absl::Status LayoutWalker::Name(const std::vector<uint8_t>& names, uint64_t offset, uint64_t at) const {
  if (offset >= names.size() || std::memchr(names.data() + offset, 0, names.size() - offset) == nullptr)
    return Damaged(absl::StrCat("a name at offset ", offset, " outside its heap"), at);
  return absl::OkStatus();
}

// A group B-tree node ("TREE", type 0): keys are name offsets, children are
// nodes one level down or, at level 0, symbol nodes. `level` -1: the root.
absl::Status LayoutWalker::BTreeNode(uint64_t addr, int level, const std::vector<uint8_t>& names, int depth) {
  const uint64_t node_size = 24 + uint64_t{16} * internal_k_ + 8 * (uint64_t{2} * internal_k_ + 1);
  std::vector<uint8_t> b;
  BATON_RETURN_IF_ERROR(Read(addr, node_size, "a group B-tree node", &b));
  if (std::memcmp(b.data(), "TREE", 4) != 0 || b[4] != 0) return Damaged("a group B-tree node without its tag", addr);
  ByteCursor c(b.data() + 5, node_size - 5);
  const int node_level = static_cast<int>(c.U(1));
  const uint64_t entries = c.U(2);
  c.Skip(16);  // siblings
  if ((level >= 0 && node_level != level) || node_level > 16)
    return Damaged(absl::StrCat("a B-tree node at level ", node_level), addr);
  if (entries > uint64_t{2} * internal_k_) return Damaged(absl::StrCat("a B-tree node of ", entries, " entries"), addr);
  for (uint64_t i = 0; i <= entries; ++i) {
    BATON_RETURN_IF_ERROR(Name(names, c.U(8), addr));
    if (i == entries) break;
    const uint64_t child = c.U(8);
    BATON_RETURN_IF_ERROR(node_level > 0 ? BTreeNode(child, node_level - 1, names, depth)
                                         : SymbolNode(child, names, depth));
  }
  return absl::OkStatus();
}

// A symbol node ("SNOD"): entries of name offset, object header, cache.
absl::Status LayoutWalker::SymbolNode(uint64_t addr, const std::vector<uint8_t>& names, int depth) {
  const uint64_t node_size = 8 + uint64_t{2} * leaf_k_ * 40;
  std::vector<uint8_t> b;
  BATON_RETURN_IF_ERROR(Read(addr, node_size, "a symbol node", &b));
  if (std::memcmp(b.data(), "SNOD", 4) != 0 || b[4] != 1) return Damaged("a symbol node without its tag", addr);
  ByteCursor c(b.data() + 6, node_size - 6);
  const uint64_t count = c.U(2);
  if (count > uint64_t{2} * leaf_k_) return Damaged(absl::StrCat("a symbol node of ", count, " entries"), addr);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t name = c.U(8), header = c.U(8), cache = c.U(4);
    c.Skip(4);
    const uint64_t scratch0 = c.U(8), scratch1 = c.U(8);
    BATON_RETURN_IF_ERROR(Name(names, name, addr));
    if (cache == 2) {  // a soft link: its value is a name in the heap
      BATON_RETURN_IF_ERROR(Name(names, scratch0 & 0xffffffff, addr));
      continue;
    }
    if (cache > 2) return Damaged(absl::StrCat("a symbol of cache type ", cache), addr);
    if (cache == 1) BATON_RETURN_IF_ERROR(Group(scratch0, scratch1, depth + 1));
    BATON_RETURN_IF_ERROR(ObjectHeader(header, depth));
  }
  return absl::OkStatus();
}

absl::Status LayoutWalker::Walk() {
  uint64_t root = 0;
  std::pair<uint64_t, uint64_t> cached_group = {kUndefined, kUndefined};
  BATON_RETURN_IF_ERROR(Superblock(&root, &cached_group));
  BATON_RETURN_IF_ERROR(ObjectHeader(root, 0));
  if (cached_group.first == kUndefined) return absl::OkStatus();
  return Group(cached_group.first, cached_group.second, 0);
}

}  // namespace

absl::Status CheckHdf5Layout(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": ", std::strerror(errno)));
  struct stat st;
  absl::Status s = ::fstat(fd, &st) == 0
                       ? LayoutWalker(path, fd, static_cast<uint64_t>(st.st_size)).Walk()
                       : absl::InvalidArgumentError(absl::StrCat("checkpoint ", path, ": ", std::strerror(errno)));
  ::close(fd);
  return s;
}

}  // namespace baton
