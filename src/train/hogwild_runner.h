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
// lock-free update are paratorch::hogwild (<paratorch/async.h>); this runner
// adds the config, dataset, metrics, validation and checkpoint around it.
//
// The update is plain SGD, p -= lr * (g + wd * p) (weight decay on dim >= 2),
// so [optim] name must be "sgd" (momentum is not used: a shared momentum
// buffer would be one more racing dense write). Torch's intra-op threads are
// set to 1: the parallelism is the T SGD threads.
#pragma once
#include "train/config.h"
#include "train/trainer.h"
#include <paratorch/world.h>

#include <string>

namespace paratorch::async {

train::TrainResult run_hogwild(World& world, const train::Config& config, const std::string& resume_dir);

}  // namespace paratorch::async
