// src/report/progress.cpp — see progress.h.
#include "report/progress.h"

#include <unistd.h>

#include <cmath>

namespace paratorch::report {

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) == 1; }

ProgressLine::ProgressLine(int64_t total_steps, std::string unit, bool interactive)
    : total_(total_steps), unit_(std::move(unit)), interactive_(interactive) {}

std::string ProgressLine::format(int64_t step, double loss, double throughput, double elapsed_s) const {
  double eta = step > 0 ? elapsed_s / static_cast<double>(step) * static_cast<double>(total_ - step) : 0;
  int eta_s = static_cast<int>(std::lround(eta));
  char buf[160];
  std::snprintf(buf, sizeof(buf), "step %lld/%lld  loss %.4f  %.0f %s  eta %d:%02d",
                static_cast<long long>(step), static_cast<long long>(total_), loss, throughput,
                unit_.c_str(), eta_s / 60, eta_s % 60);
  return buf;
}

void ProgressLine::update(int64_t step, double loss, double throughput, double elapsed_s) {
  std::string text = format(step, loss, throughput, elapsed_s);
  if (interactive_) {
    std::printf("\r\033[K%s", text.c_str());
    dirty_ = true;
  } else {
    std::printf("%s\n", text.c_str());
  }
  std::fflush(stdout);
}

void ProgressLine::finish() {
  if (dirty_) std::printf("\n");
  dirty_ = false;
  std::fflush(stdout);
}

}  // namespace paratorch::report
