// src/parallel/async/validation.cpp — see validation.h.
#include "parallel/async/validation.h"

namespace paratorch::async {

ValidationSet::ValidationSet(const data::Dataset& dataset, int64_t global_batch) {
  torch::NoGradGuard no_grad;
  for (int b = 0; b < kValidationBatches; ++b) {
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < global_batch; ++i) ids.push_back(b * global_batch + i);
    batches_.push_back(dataset.validation_batch(ids));
  }
}

double ValidationSet::loss(models::BundledModel& model) const {
  torch::NoGradGuard no_grad;
  model.eval();
  double sum = 0;
  for (const auto& batch : batches_) sum += model.loss(batch).item<double>();
  model.train();
  return sum / kValidationBatches;
}

double validation_loss(models::BundledModel& model, const data::Dataset& dataset, int64_t global_batch) {
  return ValidationSet(dataset, global_batch).loss(model);
}

}  // namespace paratorch::async
