// src/models/registry.cpp — the table of bundled model families and its
// look-ups. Each entry is defined in its model's own file; the table names
// them explicitly rather than letting each file register itself from a
// static initializer: paratorch is a static library, and the linker drops
// an object file that nothing references, registrar and all. The explicit
// list also fixes the order the names appear in messages.
#include "models/registry.h"

#include "models/cnn.h"
#include "models/gpt.h"
#include "models/mf.h"
#include "models/mlp.h"
#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::models {

const std::vector<const ModelFamily*>& model_families() {
  static const std::vector<const ModelFamily*> families = {&gpt_family(), &mlp_family(), &cnn_family(),
                                                          &mf_family()};
  return families;
}

std::vector<std::string> model_family_names(const std::function<bool(const ModelFamily&)>& keep) {
  std::vector<std::string> names;
  for (const ModelFamily* f : model_families())
    if (!keep || keep(*f)) names.push_back(f->name);
  return names;
}

const ModelFamily& model_family(const std::string& name) {
  for (const ModelFamily* f : model_families())
    if (f->name == name) return *f;
  std::string valid;
  for (const auto& n : model_family_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw UsageError("paratorch: unknown model '" + name + "'; valid models: " + valid);
}

void require_model_size(const char* key, int value) {
  if (value < 1)
    throw UsageError(std::string("paratorch: ModelConfig::") + key + " must be >= 1, got " + std::to_string(value));
}

double accuracy_metric(double /*loss*/, double accuracy) { return accuracy >= 0 ? accuracy : std::nan(""); }

double dense_activation_bytes(const ModelConfig& m, const ActivationShape& a) {
  return m.n_layers * 4 * a.micro_batch * m.d_model * a.element_bytes;
}

}  // namespace paratorch::models
