// src/plan/transformer_cost.cpp — see transformer_cost.h.
#include "plan/transformer_cost.h"

#include "models/registry.h"

#include <paratorch/errors.h>

namespace paratorch::plan {

namespace {
// The planner costs two shapes, picked by what the registry says a family
// reads: token windows go through a transformer (gpt), feature vectors
// through an mlp. Images (cnn) and id pairs (mf) have no cost model here.
bool modelled(const models::ModelFamily& f) {
  return f.input == models::ModelInput::kTokens || f.input == models::ModelInput::kFeatures;
}
}  // namespace

ModelShape ModelShape::from(const models::ModelConfig& c) {
  const models::ModelFamily& family = models::model_family(c.name);
  if (family.input == models::ModelInput::kTokens)
    return {c.n_layers, c.d_model, c.n_heads, c.seq_len, c.vocab_size, 0, Family::kGpt};
  if (family.input == models::ModelInput::kFeatures)
    return {c.n_layers, c.d_model, 1, 1, c.n_classes, c.d_in, Family::kMlp};
  std::string names;
  for (const auto& name : models::model_family_names(modelled)) names += (names.empty() ? "" : " and ") + name;
  throw UsageError("paratorch: plan and simulate model the " + names + " families; ModelConfig::name = \"" + c.name +
                   "\": use one of them");
}

double ModelShape::parameters() const {
  const double l = static_cast<double>(layers), h = static_cast<double>(hidden);
  if (family == Family::kMlp) {
    const double C = static_cast<double>(vocab), d_in = static_cast<double>(input_dim);
    return l * (8 * h * h + 7 * h) + (d_in + 1) * h + (h + 1) * C + 2 * h;
  }
  return 12 * l * h * h * (1 + 13 / (12 * h) + static_cast<double>(vocab + seq) / (12 * l * h));
}

double ModelShape::step_flops(int64_t global_batch, bool recompute) const {
  // Layers: forward + backward (2x) [+ recomputed forward]; logits: forward + backward;
  // the input projection: forward + its weight gradient.
  const double layer_passes = recompute ? 4 : 3;
  return layer_passes * static_cast<double>(layers) * layer_forward_flops(global_batch, 1) +
         3 * logits_forward_flops(global_batch, 1) + 2 * input_forward_flops(global_batch);
}

double ModelShape::layer_forward_flops(int64_t b, int tp) const {
  const double bs = static_cast<double>(b * seq), h = static_cast<double>(hidden);
  if (family == Family::kMlp) return 16 * bs * h * h / tp;
  return (24 * bs * h * h + 4 * bs * static_cast<double>(seq) * h) / tp;
}

double ModelShape::attention_forward_flops(int64_t b, int tp) const {
  if (family == Family::kMlp) return 0;
  return 4.0 * static_cast<double>(b * seq) * static_cast<double>(seq) * static_cast<double>(hidden) / tp;
}

double ModelShape::input_forward_flops(int64_t b) const {
  return 2.0 * static_cast<double>(b) * static_cast<double>(input_dim) * static_cast<double>(hidden);
}

double ModelShape::logits_forward_flops(int64_t b, int tp) const {
  return 2.0 * static_cast<double>(b * seq) * static_cast<double>(hidden) * static_cast<double>(vocab) / tp;
}

double ModelShape::layer_activation_bytes(int64_t b, int tp, bool recompute, double value_bytes) const {
  const double sbh = static_cast<double>(seq) * static_cast<double>(b) * static_cast<double>(hidden);
  const double scale = value_bytes / 2;  // the formulas count 16-bit values
  if (recompute) return scale * 2 * sbh / tp;
  if (family == Family::kMlp) return scale * 20 * sbh / tp;
  return scale * sbh * (34 + 5.0 * static_cast<double>(heads) * static_cast<double>(seq) / static_cast<double>(hidden)) /
         tp;
}

double gemm_efficiency(double n, double max_efficiency, double half_dim) {
  return max_efficiency * n / (n + half_dim);
}

}  // namespace paratorch::plan
