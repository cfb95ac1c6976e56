// src/zero/memory_estimate.cpp — see memory_estimate.h.
#include "zero/memory_estimate.h"

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

MemoryEstimate estimate_memory(const train::Config& config, int64_t parameters, int dp) {
  const double psi = static_cast<double>(parameters), n = dp < 1 ? 1 : dp;
  const double c = config.train.precision == "fp32" ? 4 : 2;
  const double k = optimizer_bytes_per_parameter(config.optim.name, config.train.precision);
  const int stage = config.parallel.zero;
  MemoryEstimate e;
  e.parameters = c * psi / (stage >= 3 ? n : 1);
  e.gradients = c * psi / (stage >= 2 ? n : 1);
  e.optimizer = k * psi / (stage >= 1 ? n : 1);
  const auto& m = config.model;
  const double b = static_cast<double>(config.data.global_batch) / n / config.parallel.microbatches;
  const double h = m.d_model, layers = m.n_layers;
  if (m.name == "gpt") {
    const double s = m.seq_len, a = m.n_heads;
    const double per_layer = s * b * h * (34 + 5 * a * s / h) * c / 2;
    e.activations = stage == 3 ? layers * s * b * h * c + per_layer : layers * per_layer;
    e.activations += s * b * m.vocab_size * c * 2;  // logits and their softmax
  } else {
    e.activations = layers * 4 * b * h * c;
  }
  return e;
}

}  // namespace paratorch::zero
