// Progress bar / progress lines (see progress.h).
#include "launcher/progress.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_format.h"

namespace baton {

Progress::Progress(int64_t total_steps, int64_t every, Mode mode)
    : total_(total_steps), every_(every < 1 ? 1 : every), start_(std::chrono::steady_clock::now()) {
  bar_ = mode == Mode::kBar || (mode == Mode::kAuto && isatty(fileno(stdout)));
}

static std::string Clock(double s) {
  int t = static_cast<int>(s + 0.5);
  return absl::StrFormat("%d:%02d", t / 60, t % 60);
}

void Progress::Update(int64_t step, const std::string& text) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (bar_) {
    constexpr int kWidth = 24;
    int filled = total_ > 0 ? static_cast<int>(kWidth * step / total_) : 0;
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    double eta = step > 0 ? elapsed * (total_ - step) / step : 0;
    std::printf("\r\033[K[%s] %lld/%lld %s  %s<%s", bar.c_str(), static_cast<long long>(step),
                static_cast<long long>(total_), text.c_str(), Clock(elapsed).c_str(), Clock(eta).c_str());
    std::fflush(stdout);
    bar_drawn_ = true;
  } else if (step % every_ == 0 || step == total_ || step == 1) {
    std::printf("step %lld/%lld  %s  (%s)\n", static_cast<long long>(step),
                static_cast<long long>(total_), text.c_str(), Clock(elapsed).c_str());
    std::fflush(stdout);
  }
}

void Progress::Note(const std::string& line) {
  if (bar_ && bar_drawn_) std::printf("\r\033[K");
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  bar_drawn_ = false;
}

void Progress::Finish() {
  if (bar_ && bar_drawn_) std::printf("\n");
  std::fflush(stdout);
  bar_drawn_ = false;
}

}  // namespace baton
