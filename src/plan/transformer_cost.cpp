// src/plan/transformer_cost.cpp — see transformer_cost.h.
#include "plan/transformer_cost.h"

namespace paratorch::plan {

GptShape GptShape::from(const models::ModelConfig& c) {
  return {c.n_layers, c.d_model, c.n_heads, c.seq_len, c.vocab_size};
}

double GptShape::parameters() const {
  const double l = static_cast<double>(layers), h = static_cast<double>(hidden);
  return 12 * l * h * h * (1 + 13 / (12 * h) + static_cast<double>(vocab + seq) / (12 * l * h));
}

double GptShape::step_flops(int64_t global_batch, bool recompute) const {
  const double B = static_cast<double>(global_batch), s = static_cast<double>(seq), l = static_cast<double>(layers),
               h = static_cast<double>(hidden), V = static_cast<double>(vocab);
  // Layers: forward + backward (2x) [+ recomputed forward]; logits: forward + backward.
  const double layer_passes = recompute ? 4 : 3;
  return layer_passes * l * (24 * B * s * h * h + 4 * B * s * s * h) + 3 * (2 * B * s * h * V);
}

double GptShape::layer_forward_flops(int64_t b, int tp) const {
  const double bs = static_cast<double>(b * seq), h = static_cast<double>(hidden);
  return (24 * bs * h * h + 4 * bs * static_cast<double>(seq) * h) / tp;
}

double GptShape::attention_forward_flops(int64_t b, int tp) const {
  return 4.0 * static_cast<double>(b * seq) * static_cast<double>(seq) * static_cast<double>(hidden) / tp;
}

double GptShape::logits_forward_flops(int64_t b, int tp) const {
  return 2.0 * static_cast<double>(b * seq) * static_cast<double>(hidden) * static_cast<double>(vocab) / tp;
}

double GptShape::layer_activation_bytes(int64_t b, int tp, bool recompute) const {
  const double sbh = static_cast<double>(seq) * static_cast<double>(b) * static_cast<double>(hidden);
  if (recompute) return 2 * sbh / tp;
  return sbh * (34 + 5.0 * static_cast<double>(heads) * static_cast<double>(seq) / static_cast<double>(hidden)) / tp;
}

double gemm_efficiency(double n, double max_efficiency, double half_dim) {
  return max_efficiency * n / (n + half_dim);
}

}  // namespace paratorch::plan
