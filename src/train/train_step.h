// src/train/train_step.h — one optimizer step, as every layout takes it.
//
// The trainer and `paratorch verify` both step through this function, so the
// layout that verify checks is exactly the one that trains. The order is
// llm.c's: zero the gradients, forward and backward over the global batch
// (the engine's reductions overlap backward), clip to the global norm (the
// engine adds the other shards' squares), update — the clip coefficient
// folded into the optimizer's pass over the gradients (grad_clip.h).
#pragma once
#include "parallel/engine.h"
#include "optim/optimizer.h"

#include <cstdint>
#include <vector>

namespace paratorch::train {

struct StepResult {
  double loss = 0;       // mean over the global batch, same on every rank
  double grad_norm = 0;  // global gradient norm before clipping
};

/// One step of `engine` + `optimizer` on this rank's micro-batches of one
/// global batch (local_microbatches, parallel/engine.h) at learning rate
/// `lr`, clipping the global gradient norm to `grad_clip` (0 = only measure).
/// Throws RuntimeFailure on a non-finite loss, naming `step_number`.
StepResult take_step(parallel::Engine& engine, optim::Optimizer& optimizer,
                     const std::vector<models::Batch>& microbatches, double lr, double grad_clip, int64_t step_number);

}  // namespace paratorch::train
