// Helpers every multi-rank test (*_mpitest.cc) needs, written once: the
// world rank and size, and a temporary directory all ranks share (rank 0
// makes it, every rank learns its name). Header-only; include it beside
// mpi_test_main.cc's binaries.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace baton {

inline int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int WorldSize() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// TMPDIR/<prefix><rank 0's pid>/<sub>, created by rank 0; collective.
inline std::filesystem::path SharedTempDir(const std::string& prefix, const std::string& sub = "") {
  int pid = WorldRank() == 0 ? static_cast<int>(::getpid()) : 0;
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::filesystem::path d = std::filesystem::temp_directory_path() / (prefix + std::to_string(pid));
  if (!sub.empty()) d /= sub;
  if (WorldRank() == 0) std::filesystem::create_directories(d);
  MPI_Barrier(MPI_COMM_WORLD);
  return d;
}

}  // namespace baton
