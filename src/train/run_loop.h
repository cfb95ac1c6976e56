// src/train/run_loop.h — the training loop of `paratorch train`, one for
// every mode. Read run_loop.cpp's run_loop top to bottom: begin (fresh or
// resumed), then for each step s: take it, validate, log and checkpoint
// where the run's cadence (run_cadence.h) says, then the end-of-run outputs
// (trace.json, the runner's own, loss.svg) and the summary.
//
// What differs between modes is how a step is taken, so that is all a
// StepRunner says:
//   - ranks that step together (sync layouts, the bulk-synchronous
//     parameter server) take step s through their engine (trainer.cpp);
//   - Hogwild's threads take steps on their own, each the next number from
//     a shared counter; its runner hands them to the loop in step order as
//     they finish (hogwild_runner.h), so validation, lines and checkpoints
//     come where a sync run's do;
//   - in an SSP or asynchronous parameter-server job the workers compute at
//     their own pace; the servers run the loop, and a server's step s
//     serves them until every live worker has pushed step s
//     (ps_server_runner.h).
//
// Example (a runner of one's own):
//   struct MyRunner : train::StepRunner { ... };
//   MyRunner runner(world, config);
//   train::TrainResult r = train::run_loop(runner, resume_dir);
//   if (world.rank() == 0) std::puts(r.summary_line().c_str());
#pragma once
#include "data/dataset.h"
#include "train/config.h"
#include "train/trainer.h"
#include <paratorch/world.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>

namespace paratorch::train {

/// What taking one step yields.
struct StepOutcome {
  double loss = 0;  // the step's training loss
  double lr = 0;
  /// The step's duration when the runner times it itself (Hogwild: the time
  /// between two steps finishing); unset: the loop times runner.step.
  std::optional<double> ms;
  /// Pre-clip global gradient norm; NaN where no rank sees it (written as null).
  double grad_norm = std::numeric_limits<double>::quiet_NaN();
  /// More fields for the step's metrics line, also printed with a validation.
  std::map<std::string, double> extra;
  /// Fields for the metrics line only (counters such as bytes sent).
  std::map<std::string, double> counters;
};

/// A held-out loss (and accuracy, -1 where the model has none).
struct Validation {
  double loss = 0;
  double accuracy = -1;
  /// False when none could be measured this time (an SSP job's validating
  /// worker was lost): the line then has no validation fields.
  bool measured = true;
};

/// How a mode takes steps; run_loop does the rest.
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  virtual World& world() = 0;
  virtual const Config& config() const = 0;
  virtual const data::Dataset& dataset() const = 0;
  /// Restores from `resume_dir` (a fresh run when empty) and gets ready to
  /// step; returns the first step.
  virtual int64_t begin(const std::string& resume_dir) = 0;
  /// Rank 0's start-up lines.
  virtual void announce(int64_t first_step) = 0;
  /// Takes step s (0-based), or waits until it is taken.
  virtual StepOutcome step(int64_t s) = 0;
  /// The held-out loss of the parameters as they are (every rank calls it).
  virtual Validation validate() = 0;
  /// Writes the checkpoint of `steps_done` steps (every rank calls it).
  virtual void checkpoint(int64_t steps_done) = 0;
  /// Writes the traced steps' spans of every rank to `path` (trace.json),
  /// on every rank, after the last step. By default a collective over the
  /// world; a mode whose ranks may be lost gathers them its own way.
  virtual void write_trace(const std::string& path);
  /// Outputs beside metrics.jsonl, loss.svg and trace.json (charts, a
  /// sample, closing lines), on every rank, after write_trace.
  virtual void finish() = 0;
  /// The summary's final_loss, given the last step's training loss and the
  /// final validation: the training loss unless the mode says otherwise.
  virtual double final_loss(double last_loss, const Validation& /*final*/) const { return last_loss; }
  /// Appended to loss.svg's title.
  virtual std::string plot_suffix() const { return ""; }
  /// The job's peak resident memory in MiB, complete on rank 0, after
  /// finish: the largest of every rank's (collective over the world).
  virtual double job_peak_rss_mb();
};

/// Runs `runner` from `resume_dir`'s step (0 when empty) to
/// config.train.steps; the result is complete on every rank.
TrainResult run_loop(StepRunner& runner, const std::string& resume_dir = "");

}  // namespace paratorch::train
