// src/report/progress.cpp — see progress.h.
#include "report/progress.h"

#include <cstdlib>

#include <unistd.h>

#include <cmath>

namespace paratorch::report {

// mpirun hands its ranks a pseudo-terminal even when its own stdout is a
// file, so a rank's isatty() says nothing. `paratorch --nproc` records what
// the user's stdout was in PARATORCH_STDOUT_TTY before starting mpirun; under
// a user's own launcher without it, plain lines are the safe choice.
bool stdout_is_terminal() {
  if (const char* recorded = std::getenv("PARATORCH_STDOUT_TTY")) return std::string(recorded) == "1";
  for (const char* launcher_var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"})
    if (std::getenv(launcher_var)) return false;
  return isatty(STDOUT_FILENO) == 1;
}

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
