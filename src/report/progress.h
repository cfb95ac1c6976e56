// src/report/progress.h — the progress line on rank 0.
//
// In a terminal the line redraws in place ("\r"); when stdout is a file or a
// pipe (CI, logs) it prints one plain line per update instead.
#pragma once
#include <cstdio>
#include <string>

namespace paratorch::report {

class ProgressLine {
 public:
  ProgressLine(int64_t total_steps, std::string unit, bool interactive);
  /// Shows step `step` (1-based), its loss and throughput, and the ETA from
  /// the mean time per step so far.
  void update(int64_t step, double loss, double throughput, double elapsed_s);
  /// Ends a redrawn line with a newline.
  void finish();
  /// The text of one update (for tests).
  std::string format(int64_t step, double loss, double throughput, double elapsed_s) const;

 private:
  int64_t total_;
  std::string unit_;
  bool interactive_;
  bool dirty_ = false;
};

/// True when stdout is a terminal.
bool stdout_is_terminal();

}  // namespace paratorch::report
