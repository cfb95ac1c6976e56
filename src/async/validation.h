// src/async/validation.h — the final validation loss of the asynchronous
// runners: the mean loss over the first kValidationBatches global batches of
// held-out samples, as the synchronous trainer's validation (trainer.cpp).
#pragma once
#include "data/dataset.h"
#include "models/model.h"

namespace paratorch::async {

constexpr int kValidationBatches = 4;

double validation_loss(models::BundledModel& model, const data::Dataset& dataset, int64_t global_batch);

}  // namespace paratorch::async
