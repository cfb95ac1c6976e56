// src/train/hogwild_runner.h — `paratorch train` with [parallel] mode = "hogwild":
// lock-free parallel SGD in one process (Niu, Recht, Ré & Wright, 2011,
// "Hogwild!: A lock-free approach to parallelizing stochastic gradient descent").
//
// T = [train] threads_per_rank threads (2 when 0) share ONE copy of the
// parameters. Each thread repeatedly takes the next global step s (an atomic
// counter), computes the gradient of the mean loss over global batch s on the
// parameters as they are at that moment, and subtracts lr(s) x gradient in
// place, without any lock. Updates of different threads may interleave
// element by element; Hogwild's analysis shows SGD still converges when each
// update touches few coordinates (sparse problems such as matrix
// factorization: a batch touches few rows of the user and item tables),
// which is why only the rows a gradient touches are written. Dense models
// (mlp, gpt) run too, but there every update writes every coordinate, so
// collisions are the rule and the benefit is only the parallel gradient
// computation. Details and measurements: docs/async.md. The threads and the
// lock-free update are paratorch::hogwild (<paratorch/async.h>), run on a
// thread of their own; this runner hands their steps to the training loop
// (run_loop.h) in step order as they finish, so metrics lines, validations
// and checkpoints come where a sync run's do, on the shared parameters as
// they are then (the threads keep updating them: Hogwild's reads race).
//
// The update is plain SGD, p -= lr * (g + wd * p) (weight decay on dim >= 2),
// so [optim] name must be "sgd" (momentum is not used: a shared momentum
// buffer would be one more racing dense write). Torch's intra-op threads are
// set to 1: the parallelism is the T SGD threads.
#pragma once
#include "train/config.h"
#include "train/run_loop.h"
#include <paratorch/world.h>

#include <memory>
#include <vector>

namespace paratorch::async {

/// A Hogwild run's pace at each step, in ms per step, from the times its
/// steps finish (given in step order). T threads finish T steps in about
/// one step's time, and not in step order, so a step's own duration or the
/// gap to the step before would mislead. With F(s) the time by which the
/// steps up to s had all finished, the mean over the last `window` (= T)
/// steps, (F(s) - F(s - T)) / T, is never negative, and over a run sums to
/// about its wall time.
class StepPace {
 public:
  StepPace(int window, double start_s);
  double ms(double finished_s);

 private:
  size_t window_;
  std::vector<double> done_by_;  // F(s) for each step so far; [0]: the start
};

/// The runner of [parallel] mode = "hogwild" (UsageError naming the key
/// when the config asks for what Hogwild does not do).
std::unique_ptr<train::StepRunner> make_hogwild_runner(World& world, train::Config config);

}  // namespace paratorch::async
