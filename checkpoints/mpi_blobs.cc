// Blob exchange and agreement between the ranks of a checkpoint call (see mpi_blobs.h).
#include "checkpoints/mpi_blobs.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "parallel/mpi_check.h"

namespace baton {

int CommRank(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

int CommSize(MPI_Comm comm) {
  int n = 1;
  MPI_Comm_size(comm, &n);
  return n;
}

absl::Status Agree(MPI_Comm comm, const absl::Status& mine) {
  const int rank = CommRank(comm), size = CommSize(comm);
  int bad = mine.ok() ? size : rank, first = size;
  BATON_CHECK_MPI(MPI_Allreduce(&bad, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return absl::OkStatus();
  int head[2] = {static_cast<int>(mine.code()), static_cast<int>(mine.message().size())};
  BATON_CHECK_MPI(MPI_Bcast(head, 2, MPI_INT, first, comm));
  std::string msg(mine.message());
  msg.resize(head[1]);
  BATON_CHECK_MPI(MPI_Bcast(msg.data(), head[1], MPI_CHAR, first, comm));
  if (rank != first) msg = absl::StrCat(msg, " (on rank ", first, ")");
  return absl::Status(static_cast<absl::StatusCode>(head[0]), msg);
}

absl::StatusOr<std::vector<std::string>> AllgatherBlobs(MPI_Comm comm, const std::string& mine) {
  const int size = CommSize(comm);
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size), displs(size);
  BATON_CHECK_MPI(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = static_cast<int>(total);
    total += lens[r];
  }
  if (total > INT32_MAX) return absl::ResourceExhaustedError("the shard lists of all ranks exceed 2 GiB");
  std::string all(total, '\0');
  BATON_CHECK_MPI(
      MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, comm));
  std::vector<std::string> out(size);
  for (int r = 0; r < size; ++r) out[r] = all.substr(displs[r], lens[r]);
  return out;
}

absl::Status BroadcastBlob(MPI_Comm comm, std::string* blob) {
  int64_t len = static_cast<int64_t>(blob->size());
  BATON_CHECK_MPI(MPI_Bcast(&len, 1, MPI_INT64_T, 0, comm));
  if (len > INT32_MAX) return absl::ResourceExhaustedError("broadcast over 2 GiB");
  blob->resize(len);
  BATON_CHECK_MPI(MPI_Bcast(blob->data(), static_cast<int>(len), MPI_CHAR, 0, comm));
  return absl::OkStatus();
}

constexpr size_t kMpiPiece = size_t{1} << 30;

absl::Status SendBytes(const void* p, size_t n, int to, MPI_Comm comm) {
  for (size_t at = 0; at < n; at += kMpiPiece) {
    BATON_CHECK_MPI(MPI_Send(static_cast<const char*>(p) + at, static_cast<int>(std::min(kMpiPiece, n - at)),
                             MPI_BYTE, to, 0, comm));
  }
  return absl::OkStatus();
}

absl::Status RecvBytes(void* p, size_t n, int from, MPI_Comm comm) {
  for (size_t at = 0; at < n; at += kMpiPiece) {
    BATON_CHECK_MPI(MPI_Recv(static_cast<char*>(p) + at, static_cast<int>(std::min(kMpiPiece, n - at)), MPI_BYTE,
                             from, 0, comm, MPI_STATUS_IGNORE));
  }
  return absl::OkStatus();
}

// ---- blob encoding

void PutInt(std::string& out, int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

int64_t GetInt(const char*& p) {
  int64_t v;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return v;
}

void PutString(std::string& out, const std::string& s) {
  PutInt(out, static_cast<int64_t>(s.size()));
  out += s;
}

std::string GetString(const char*& p) {
  const int64_t n = GetInt(p);
  std::string s(p, n);
  p += n;
  return s;
}

void PutShape(std::string& out, const Shape& s) {
  PutInt(out, static_cast<int64_t>(s.size()));
  for (int64_t d : s) PutInt(out, d);
}

Shape GetShape(const char*& p) {
  Shape s(GetInt(p));
  for (int64_t& d : s) d = GetInt(p);
  return s;
}

std::vector<std::string> GetStrings(const std::string& blob) {
  std::vector<std::string> out;
  for (const char* p = blob.data(); p < blob.data() + blob.size();) out.push_back(GetString(p));
  return out;
}

}  // namespace baton
