// src/async/validation.cpp — see validation.h.
#include "async/validation.h"

namespace paratorch::async {

double validation_loss(models::BundledModel& model, const data::Dataset& dataset, int64_t global_batch) {
  torch::NoGradGuard no_grad;
  model.eval();
  double sum = 0;
  for (int b = 0; b < kValidationBatches; ++b) {
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < global_batch; ++i) ids.push_back(b * global_batch + i);
    sum += model.loss(dataset.validation_batch(ids)).item<double>();
  }
  model.train();
  return sum / kValidationBatches;
}

}  // namespace paratorch::async
