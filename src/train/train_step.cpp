// src/train/train_step.cpp — see train_step.h.
#include "train/train_step.h"

#include "report/trace.h"
#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::train {

StepResult take_step(parallel::Engine& engine, optim::Optimizer& optimizer,
                     const std::vector<models::Batch>& microbatches, double lr, double grad_clip, int64_t step_number) {
  auto params = engine.named_parameters();
  {
    report::Tracer::Span span("zero_grad", "compute");
    optim::zero_gradients(params);
  }
  StepResult result;
  result.loss = engine.forward_backward(microbatches);
  if (!std::isfinite(result.loss))
    throw RuntimeFailure("paratorch: the loss is " + std::to_string(result.loss) + " at step " +
                         std::to_string(step_number) + "; lower [optim] lr or set [optim] grad_clip");
  {
    report::Tracer::Span span("grad_norm", "compute");
    result.grad_norm = engine.grad_norm();
  }
  report::Tracer::Span span("optimizer", "compute");
  optimizer.step(lr, parallel::clip_coefficient(result.grad_norm, grad_clip));  // the clip, folded into the update
  return result;
}

}  // namespace paratorch::train
