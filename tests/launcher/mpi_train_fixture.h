// Shared pieces of the multi-rank training tests (*_mpitest.cc under
// tests/launcher): the world rank and size, and a small byte-level corpus
// that rank 0 writes once per process and every rank then reads.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/indexed_dataset.h"
#include "runtime/tokenizer.h"

namespace baton::testing {

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

// A directory holding `corpus.{bin,idx}`: 200 documents of 40 + (d % spread)
// letters drawn by an LCG seeded with `seed`. Made by rank 0 on first call,
// its path broadcast to every rank.
inline std::filesystem::path SharedCorpusDir(const std::string& tag, uint64_t seed, int spread) {
  static std::filesystem::path dir;
  if (!dir.empty()) return dir;
  char buf[256] = {};
  if (WorldRank() == 0) {
    std::filesystem::path d =
        std::filesystem::temp_directory_path() / ("baton_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    ByteTokenizer tok;
    auto w = IndexedDatasetWriter::Create((d / "corpus").string(), IndexDType::kUInt16);
    uint64_t x = seed;
    for (int doc = 0; doc < 200; ++doc) {
      std::vector<int32_t> ids = {tok.bos_id()};
      for (int i = 0; i < 40 + doc % spread; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids.push_back(static_cast<int32_t>("etaoin shrdlu cmfwyp"[(x >> 33) % 20]));
      }
      ids.push_back(tok.eos_id());
      (void)w->AddSequence(ids);
      w->EndDocument();
    }
    (void)w->Finish();
    std::snprintf(buf, sizeof buf, "%s", d.c_str());
  }
  MPI_Bcast(buf, sizeof buf, MPI_CHAR, 0, MPI_COMM_WORLD);
  dir = buf;
  return dir;
}

}  // namespace baton::testing
