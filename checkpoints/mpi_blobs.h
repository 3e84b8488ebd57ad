// The small MPI protocol of the collective checkpoint calls
// (dist_checkpoint_write.cc, _read.cc): byte blobs gathered or broadcast between the ranks
// of one communicator, large slices sent point-to-point in pieces, and the
// agreement step that turns an error on any rank into the same error on
// every rank. Every function here is collective (or a matched send/receive
// pair): call it on every rank in the same order, whatever failed before.
// Blobs are encoded with the Put*/Get* helpers below; they travel only
// between ranks of one job, so they carry no version and no endianness.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/tensor.h"

namespace baton {

int CommRank(MPI_Comm comm);
int CommSize(MPI_Comm comm);

// The lowest failing rank's status on every rank, with " (on rank R)"
// appended elsewhere; OK only if `mine` is OK on every rank.
absl::Status Agree(MPI_Comm comm, const absl::Status& mine);

// Every rank's `mine`, in rank order, on every rank.
absl::StatusOr<std::vector<std::string>> AllgatherBlobs(MPI_Comm comm, const std::string& mine);

// Rank 0's `blob` on every rank.
absl::Status BroadcastBlob(MPI_Comm comm, std::string* blob);

// Point-to-point in pieces of at most 1 GiB (MPI counts are ints).
absl::Status SendBytes(const void* p, size_t n, int to, MPI_Comm comm);
absl::Status RecvBytes(void* p, size_t n, int from, MPI_Comm comm);

// ---- blob encoding: Put appends, Get reads at `p` and advances it
void PutInt(std::string& out, int64_t v);
int64_t GetInt(const char*& p);
void PutString(std::string& out, const std::string& s);
std::string GetString(const char*& p);
void PutShape(std::string& out, const Shape& s);
Shape GetShape(const char*& p);

// The strings of a blob made by PutString calls alone.
std::vector<std::string> GetStrings(const std::string& blob);

}  // namespace baton
