// Where a GPU training step spends its time, op by op, for benchmarks
// (bench/train_bench --profile): while enabled, every CUDA op of the op
// table records a CUDA event before and after itself on the current
// stream; Collect() synchronises and sums the elapsed time per op name.
// Off by default, and then each op pays one branch. The events serialise
// nothing (they are recorded on the op's own stream), but their small cost
// makes the profiled step a little slower than an unprofiled one.
#pragma once

#include <string>
#include <vector>

namespace baton::op_profile {

void Enable(bool on);
bool Enabled();

// Times the GPU work enqueued between construction and destruction.
class Scope {
 public:
  explicit Scope(const char* name);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  int index_ = -1;
};

struct Row {
  std::string name;
  int64_t calls = 0;
  double ms = 0;
};
// Every op's total since the last Collect (sorted by time, largest first);
// synchronises the device and clears the record.
std::vector<Row> Collect();

}  // namespace baton::op_profile
