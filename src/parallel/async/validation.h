// src/parallel/async/validation.h — the validation loss of the asynchronous runners:
// the mean loss over the first kValidationBatches global batches of
// held-out samples, as the synchronous trainer's validation (trainer.cpp).
#pragma once
#include "data/dataset.h"
#include "models/model.h"

#include <vector>

namespace paratorch::async {

constexpr int kValidationBatches = 4;

/// The validation batches, built once: a ps worker that validates every
/// 5 x log_every steps measures the same samples each time, and rebuilding
/// them each time (synthetic data draws every sample from its own
/// generator) spent the CPU the other workers compute with.
class ValidationSet {
 public:
  ValidationSet(const data::Dataset& dataset, int64_t global_batch);
  /// Mean loss of `model` over the batches (eval mode, no autograd).
  double loss(models::BundledModel& model) const;

 private:
  std::vector<models::Batch> batches_;
};

/// One measurement, building the batches for it.
double validation_loss(models::BundledModel& model, const data::Dataset& dataset, int64_t global_batch);

}  // namespace paratorch::async
