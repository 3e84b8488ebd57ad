// Progress reporting for long jobs: a one-line bar redrawn in place on a
// terminal, or one plain line every `every` steps when output is a file or
// a pipe (Slurm logs). Only rank 0 of a job reports.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace baton {

class Progress {
 public:
  enum class Mode { kAuto, kBar, kLines };
  Progress(int64_t total_steps, int64_t every, Mode mode);
  // `text` is the tail of the line: "loss 2.314 lr 3.0e-03 12.1k tok/s".
  void Update(int64_t step, const std::string& text);
  // Prints a line that must not be overwritten by the bar (validation, checkpoint).
  void Note(const std::string& line);
  void Finish();

 private:
  int64_t total_, every_;
  bool bar_;
  bool bar_drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace baton
