// src/train/run_cadence.h — when a run logs, validates, checkpoints and
// stops tracing: one set of rules for every runner (the synchronous
// trainer, the parameter server's workers and server 0, Hogwild's threads),
// so the same config gives the same lines, validation points and
// checkpoints whichever mode runs it.
//
// Steps are counted from 1 (step = optimizer steps done). A line every
// log_every steps and at the last; a validation every 5 x log_every steps
// (the held-out loss moves slowly, and each costs kValidationBatches
// global batches) and at the end of the run; a checkpoint every
// checkpoint_every steps and at the last; trace.json covers each runner's
// first kTracedSteps steps (enough to see the overlap of backward and the
// reductions without a file that grows with the run).
#pragma once
#include "train/config.h"

#include <cstdint>

namespace paratorch::train {

class RunCadence {
 public:
  static constexpr int64_t kTracedSteps = 20;

  explicit RunCadence(const TrainSection& train = {})
      : log_every_(train.log_every), checkpoint_every_(train.checkpoint_every), steps_(train.steps) {}

  int64_t steps() const { return steps_; }
  bool last(int64_t step) const { return step == steps_; }
  /// A metrics line after `step`.
  bool logs(int64_t step) const { return step % log_every_ == 0 || last(step); }
  /// A validation during the run (not at its end, which every runner
  /// measures on the final parameters).
  bool validates_mid_run(int64_t step) const {
    return step > 0 && step < steps_ && step % (5 * static_cast<int64_t>(log_every_)) == 0;
  }
  /// A checkpoint once `step` steps are done.
  bool checkpoints(int64_t step) const {
    return last(step) || (checkpoint_every_ > 0 && step % checkpoint_every_ == 0);
  }
  /// A checkpoint between `from` and `to` steps done (a server's progress
  /// jumps by several steps at once).
  bool checkpoints_between(int64_t from, int64_t to) const {
    return checkpoint_every_ > 0 && to / checkpoint_every_ > from / checkpoint_every_;
  }
  /// Whether the runner still traces after `done` of its own steps this run.
  static bool traces(int64_t done) { return done < kTracedSteps; }

 private:
  int64_t log_every_, checkpoint_every_, steps_;
};

}  // namespace paratorch::train
