// src/report/metrics.h — metrics.jsonl: one JSON object per logged step.
//
// Each line is flushed when written, so a run that dies still leaves every
// step it logged. Keys (docs/verify.md): step, loss, lr, step_ms, tokens_per_s or
// samples_per_s, grad_norm, plus any extra numbers a caller adds (val_loss,
// skipped steps, ...).
#pragma once
#include <cstdio>
#include <map>
#include <limits>
#include <string>

namespace paratorch::report {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, lr = 0, step_ms = 0, throughput = 0;
  // The global pre-clip gradient norm; NaN where the run does not measure one
  // (asynchronous modes: no rank sees the whole step's gradient), written as
  // null rather than as a made-up 0.
  double grad_norm = std::numeric_limits<double>::quiet_NaN();
  std::string throughput_unit = "samples/s";  // or "tokens/s"
  std::map<std::string, double> extra;
};

class MetricsWriter {
 public:
  /// Appends to `path` when `append` (a resumed run), else truncates.
  MetricsWriter(const std::string& path, bool append);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const StepMetrics& m);

 private:
  std::FILE* file_ = nullptr;
};

/// The JSON line for `m` (no trailing newline).
std::string to_json_line(const StepMetrics& m);

}  // namespace paratorch::report
