// src/models/registry.h — the bundled model families, looked up by name.
//
// Everything the trainer, the data sources, the memory estimate, the config
// checks and `paratorch verify` need to know about a bundled model is one
// ModelFamily, defined beside the model itself (gpt.cpp, mlp.cpp, cnn.cpp,
// mf.cpp). Code outside src/models asks the registry instead of comparing
// the model's name, so a new model family is one entry in its own file plus
// one line in registry.cpp:
//
//   const ModelFamily& f = model_family(config.model.name);  // UsageError if unknown
//   m.extra[f.metric_key] = f.metric(loss, accuracy);
#pragma once
#include "models/model.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::models {

/// What one sample's input is; the data sources choose their batches by it.
enum class ModelInput {
  kTokens,    ///< int64 token windows [N, seq_len] (gpt)
  kFeatures,  ///< float feature vectors [N, d_in] (mlp)
  kImages,    ///< float images [N, 1, 28, 28] (cnn)
  kPairs,     ///< int64 (user, item) ids [N, 2] with a float rating (mf)
};

/// The sizes the activation-memory estimate has beside the model's config.
struct ActivationShape {
  double micro_batch = 1;    ///< samples per rank per micro-batch
  double element_bytes = 4;  ///< 4 in fp32, 2 in fp16 / bf16
  int zero_stage = 0;        ///< ZeRO-3 keeps only each layer's input for backward
};

/// One bundled model family: its facts and the functions that build and size it.
struct ModelFamily {
  std::string name;                     ///< [model] name
  ModelInput input = ModelInput::kFeatures;
  std::string throughput_unit = "samples/s";
  std::string loss_name = "cross-entropy (nats)";  ///< y axis of loss.svg
  std::string metric_key;               ///< the validation metric it is judged by (docs/config.md)
  bool text_sample = false;             ///< training ends with a generated text sample
  std::string verify_source;            ///< [data] source of `verify --model`; "" = not offered there
  /// Predictions per sample, for throughput (gpt: seq_len tokens).
  std::function<int64_t(const ModelConfig&)> items_per_sample = [](const ModelConfig&) { return int64_t{1}; };
  /// metric_key's value from the validation loss and accuracy (-1 when the
  /// engine measured none); NaN = nothing to log.
  std::function<double(double loss, double accuracy)> metric;
  /// UsageError naming the [model] key when a size this family reads is bad
  /// (after the checks every family shares).
  std::function<void(const ModelConfig&)> validate;
  /// UsageError when tp ranks cannot split the model; empty = no tensor-parallel layers.
  std::function<void(const ModelConfig&, int tp, bool sequence_parallel)> check_tensor_parallel;
  /// The model; `tp` is active only for families with check_tensor_parallel.
  std::function<std::shared_ptr<BundledModel>(const ModelConfig&, const tensor_parallel::TensorParallelContext&)> make;
  /// Bytes of activations one rank keeps for backward, for the start-up
  /// memory estimate (parallel/zero/memory_estimate.h).
  std::function<double(const ModelConfig&, const ActivationShape&)> activation_bytes;
  /// The small sizes `paratorch verify` and the tests train (name already set).
  std::function<void(ModelConfig&)> small_sizes;
};

/// The family named `name`; UsageError listing the registered names when none is.
const ModelFamily& model_family(const std::string& name);

/// Every registered family, in the order messages list them.
const std::vector<const ModelFamily*>& model_families();

/// The names of the families `keep` accepts (all when empty), in registry order.
std::vector<std::string> model_family_names(const std::function<bool(const ModelFamily&)>& keep = {});

/// UsageError "[model] KEY must be >= 1" unless `value` is: the size check
/// every family's validate uses.
void require_model_size(const char* key, int value);

/// The metric of classifiers (mlp, cnn): the validation accuracy; NaN when
/// the run measured none.
double accuracy_metric(double loss, double accuracy);

/// Activations of models whose layers keep a few d_model-wide vectors per
/// sample for backward (mlp, cnn, mf): n_layers x 4 x batch x d_model elements.
double dense_activation_bytes(const ModelConfig& config, const ActivationShape& shape);

}  // namespace paratorch::models
