// src/train/ps_logger.h — server 0's metrics.jsonl lines during a
// parameter-server run: one line per log_every "global steps" (W pushes
// each) with the mean of the workers' latest losses, samples/s and the
// updates applied so far.
//
// Mid-run validation, as the synchronous trainer's (every 5 x log_every
// steps): server 0 holds only its shard, so the worker that computes share
// 0 of global step t (t a multiple of 5 x log_every) measures the
// validation loss on the parameters it pulled for t — after t updates under
// BSP, exactly where the synchronous trainer measures — and sends it with
// that push. The line for step t waits for it (val_loss in the same line,
// as in sync mode) until the next line is due; in the asynchronous modes it
// may come after, and is then written with the next line as
// val_loss_step / val_loss.
#pragma once
#include "parallel/async/ps_server.h"
#include "report/metrics.h"
#include "optim/lr_schedule.h"
#include "train/run_cadence.h"
#include "train/run_reporter.h"

#include <map>
#include <optional>
#include <string>

namespace paratorch::async {

struct LoggerOptions {
  int workers = 1;
  train::RunCadence cadence;     // when lines and validations are due
  int64_t first_step = 0;        // a resumed run starts here
  optim::LrSchedule schedule;
};

class Logger {
 public:
  /// Writes through `reporter` (the run's metrics.jsonl and loss.svg).
  Logger(const Server& server, train::RunReporter& reporter, LoggerOptions options);
  /// After each push server 0 handled; `validation` as Server::on_push.
  void on_push(int64_t step, double validation);
  /// Writes a line still waiting for its validation.
  void flush();

 private:
  void write(report::StepMetrics m);
  const Server& server_;
  train::RunReporter& reporter_;
  LoggerOptions options_;
  int64_t pushes_ = 0, logged_step_ = 0;
  double last_s_;
  std::optional<report::StepMetrics> held_;  // a validating step's line
  std::map<int64_t, double> validation_;     // by step, not yet written
};

}  // namespace paratorch::async
