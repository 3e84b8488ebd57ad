// CUDA-event timing of op-table calls (see op_profile.h).
#include "runtime/op_profile.h"

#include <algorithm>
#include <map>

#ifdef BATON_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/stream.h"
#endif

namespace baton::op_profile {
namespace {

bool enabled = false;
#ifdef BATON_HAVE_CUDA
struct Mark {
  const char* name;
  cudaEvent_t start, stop;
};
std::vector<Mark>& Marks() {
  static std::vector<Mark> marks;
  return marks;
}
std::vector<cudaEvent_t>& Pool() {  // events reused across Collect calls
  static std::vector<cudaEvent_t> pool;
  return pool;
}
cudaEvent_t Take() {
  if (!Pool().empty()) {
    cudaEvent_t e = Pool().back();
    Pool().pop_back();
    return e;
  }
  cudaEvent_t e;
  cudaEventCreate(&e);
  return e;
}
#endif

}  // namespace

void Enable(bool on) { enabled = on; }
bool Enabled() { return enabled; }

Scope::Scope(const char* name) {
#ifdef BATON_HAVE_CUDA
  if (!enabled) return;
  Mark m{name, Take(), Take()};
  cudaEventRecord(m.start, cuda::CurrentStream());
  Marks().push_back(m);
  index_ = static_cast<int>(Marks().size()) - 1;
#else
  (void)name;
#endif
}

Scope::~Scope() {
#ifdef BATON_HAVE_CUDA
  if (index_ >= 0) cudaEventRecord(Marks()[index_].stop, cuda::CurrentStream());
#endif
}

std::vector<Row> Collect() {
  std::vector<Row> rows;
#ifdef BATON_HAVE_CUDA
  cudaDeviceSynchronize();
  std::map<std::string, Row> by_name;
  for (const Mark& m : Marks()) {
    float ms = 0;
    cudaEventElapsedTime(&ms, m.start, m.stop);
    Row& r = by_name[m.name];
    r.name = m.name;
    ++r.calls;
    r.ms += ms;
    Pool().push_back(m.start);
    Pool().push_back(m.stop);
  }
  Marks().clear();
  for (auto& [name, r] : by_name) rows.push_back(r);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
#endif
  return rows;
}

}  // namespace baton::op_profile
