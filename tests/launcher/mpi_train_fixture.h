// Shared pieces of the multi-rank training tests (*_mpitest.cc under
// tests/launcher): the world rank and size, a small byte-level corpus that
// rank 0 writes once per process and every rank then reads, the tiny job
// they train on it, the mesh communicators, and the readers of what a run
// leaves (its metrics, its weights' distance from another run's).
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "launcher/config.h"
#include "nlohmann/json.hpp"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "parallel/ucx_p2p.h"
#include "runtime/indexed_dataset.h"
#include "runtime/tensor.h"
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

// The tiny job the tests train: a `layers`-layer, dim-32 Llama over bytes,
// 6 steps of 8 sequences of 16 tokens (micro-batches of 2), on the corpus
// in `dir`, writing its checkpoints to dir/run/ckpt and its metrics to
// dir/run/metrics.jsonl. `sets` ("section.key=value") apply after those;
// `source_name` names the text in error messages.
inline absl::StatusOr<JobConfig> TinyJobConfig(const std::filesystem::path& dir, const std::string& run,
                                               const std::string& source_name, int layers,
                                               const std::vector<std::string>& sets) {
  const std::string toml = "[model]\nlayers = " + std::to_string(layers) + R"(
dim = 32
heads = 4
kv_heads = 2
ffn_dim = 48
vocab_size = 258
[train]
steps = 6
seq_len = 16
micro_batch_size = 2
global_batch_size = 8
lr = 1e-2
warmup_steps = 2
[checkpoint]
resume = "none"
[output]
progress = "lines"
)";
  std::vector<std::string> all = {"data.path=\"" + (dir / "corpus").string() + "\"",
                                  "checkpoint.dir=\"" + (dir / run / "ckpt").string() + "\"",
                                  "output.metrics=\"" + (dir / run / "metrics.jsonl").string() + "\""};
  all.insert(all.end(), sets.begin(), sets.end());
  return ParseJobConfig(toml, source_name, all);
}

// The values of `key` ("loss", "val_loss", ...) in a metrics file, in file order.
inline std::vector<double> ReadMetric(const std::filesystem::path& metrics, const char* key) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(j[key].get<double>());
  }
  return out;
}

// How far f32 tensor `b` is from `a` (same shape): relative L2 ‖b−a‖/‖a‖
// and the RMS of the difference.
struct TensorDistance {
  double relative = 0, rms = 0;
};
inline TensorDistance Distance(const Tensor& a, const Tensor& b) {
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  double num = 0, den = 0;
  for (int64_t k = 0; k < a.numel(); ++k) {
    num += (x[k] - y[k]) * double(x[k] - y[k]);
    den += double(x[k]) * x[k];
  }
  return {std::sqrt(num / den), std::sqrt(num / static_cast<double>(a.numel()))};
}

// The dp × pp × tp mesh communicators over `world`, the pp group's
// point-to-point over UCX when `ucx`.
inline MeshComms MeshCommsFor(int dp, int pp, int tp, bool ucx = false, MPI_Comm world = MPI_COMM_WORLD) {
  int size = 0, rank = 0;
  MPI_Comm_size(world, &size);
  MPI_Comm_rank(world, &rank);
  auto mesh = Mesh::Create({dp, pp, tp}, size, rank);
  EXPECT_TRUE(mesh.ok()) << mesh.status();
  auto comms = ucx ? CreateMeshCommsWithUcxPipeline(*mesh, world) : CreateMpiMeshComms(*mesh, world);
  EXPECT_TRUE(comms.ok()) << comms.status();
  return std::move(*comms);
}

}  // namespace baton::testing
