// src/parallel/zero/memory_estimate.cpp — see memory_estimate.h.
#include "parallel/zero/memory_estimate.h"

#include "models/registry.h"

#include <cstdio>

namespace paratorch::zero {

double optimizer_bytes_per_parameter(const std::string& optimizer, const std::string& precision) {
  const double moments = optimizer == "adamw" ? 8 : 4;  // m and v, or the momentum buffer
  return moments + (precision == "fp32" ? 0 : 4);       // + the fp32 master copy
}

std::string MemoryEstimate::line() const {
  auto mib = [](double b) { return b / (1024.0 * 1024.0); };
  char out[200];
  std::snprintf(out, sizeof out, "params %.1f MiB, grads %.1f MiB, optimizer %.1f MiB, activations ~%.1f MiB (total ~%.1f MiB)",
                mib(parameters), mib(gradients), mib(optimizer), mib(activations),
                mib(model_state() + activations));
  return out;
}

MemoryEstimate estimate_memory(const MemoryEstimateOptions& options, int64_t parameters, int dp) {
  const double psi = static_cast<double>(parameters), n = dp < 1 ? 1 : dp;
  const double c = options.precision == "fp32" ? 4 : 2;
  const double k = optimizer_bytes_per_parameter(options.optimizer, options.precision);
  const int stage = options.stage;
  MemoryEstimate e;
  e.parameters = c * psi / (stage >= 3 ? n : 1);
  e.gradients = c * psi / (stage >= 2 ? n : 1);
  e.optimizer = k * psi / (stage >= 1 ? n : 1);
  const double b = static_cast<double>(options.global_batch) / n / options.microbatches;
  e.activations = models::model_family(options.model.name).activation_bytes(options.model, {b, c, stage});
  return e;
}

}  // namespace paratorch::zero
