// src/train/run_reporter.h — what every training loop leaves behind, written
// in one place: metrics.jsonl (kept consistent across a resume), loss.svg,
// checkpoints under <out_dir>, and the summary's TrainResult.
//
// `paratorch train` has one training loop (run_loop.h), which writes
// through a RunReporter on rank 0 whatever the runner (sync layouts, the
// parameter server, hogwild). So every mode produces the same files with
// the same fields, trimmed the same way on resume, and the same loss.svg.
// trace.json is the loop's too: run_loop has the runner gather every rank's
// spans after the last step (StepRunner::write_trace, collective; the
// parameter server's servers gather point to point, ps_trace.h).
//
// Example (one loop's writing rank):
//   RunReporter reporter(config, dataset, start);         // trims metrics.jsonl past `start`
//   auto m = reporter.line(step, loss, lr, ms);           // throughput filled
//   add_validation_fields(m, config.model.name, val, acc);
//   reporter.write(m);                                    // metrics.jsonl + loss.svg's curves
//   save_run_checkpoint(config, ckpt, layout);
//   reporter.finish();                                    // loss.svg
//   return run_result(config, dataset, final_loss, mean_step_ms);
#pragma once
#include "data/dataset.h"
#include "report/metrics.h"
#include "checkpoint/step_folder.h"
#include "train/config.h"
#include "train/run_history.h"
#include "train/trainer.h"

#include <cstdint>
#include <memory>
#include <string>

namespace paratorch::train {

class RunReporter {
 public:
  /// Creates out_dir. A resumed run (first_step > 0) keeps metrics.jsonl's
  /// lines up to first_step and appends; a fresh one starts the file anew.
  RunReporter(const Config& config, const data::Dataset& dataset, int64_t first_step);

  /// <out_dir>/<file>.
  std::string path(const std::string& file) const;
  /// Items (tokens or samples) per second at `ms` per global step.
  double throughput(double ms) const;
  const std::string& unit() const { return unit_; }
  /// A metrics line for `step`: loss, lr, step time and its throughput.
  report::StepMetrics line(int64_t step, double loss, double lr, double ms) const;

  /// Writes `m` to metrics.jsonl. Its loss joins loss.svg's training curve,
  /// its val_loss (where measured: not NaN) the validation curve.
  void write(const report::StepMetrics& m);

  /// loss.svg, titled "<model> on <source><suffix>".
  void finish(const std::string& suffix = "") const;

 private:
  const Config& config_;
  const data::Dataset& dataset_;
  std::string unit_;
  RunHistory history_;  // before writer_: a resumed run trims the file first
  std::unique_ptr<report::MetricsWriter> writer_;
};

/// Items (tokens or samples) of `dataset` per second at `ms` per global step of `config`.
double items_per_second(const Config& config, const data::Dataset& dataset, double ms);

/// A run's summary on any rank: config.train.steps, `final_loss`,
/// `mean_step_ms`, its throughput and this process's peak resident memory.
TrainResult run_result(const Config& config, const data::Dataset& dataset, double final_loss, double mean_step_ms);

/// Writes `ckpt` under <out_dir>/<folder>, from this process alone, as a
/// sharded checkpoint of one shard file (the format every paratorch writer
/// uses), after filling in what every run's checkpoint carries: the config
/// (as TOML) and the layout that wrote it. Returns the step folder.
std::string save_run_checkpoint(const Config& config, checkpoints::Checkpoint ckpt, const std::string& layout,
                                const std::string& folder = "checkpoints");

}  // namespace paratorch::train
