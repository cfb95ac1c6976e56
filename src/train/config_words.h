// src/train/config_words.h — what the config's reading and its validation
// share: the allowed words of each choice key (the models' and the
// schedules' come from their registries: models::model_family_names,
// pipeline::schedule_names), the TOML spelling of values in messages, and the
// error that names a key. Internal to src/train/config*.cpp.
#pragma once
#include <paratorch/errors.h>

#include <string>
#include <vector>

namespace paratorch::train::config_words {

inline const std::vector<std::string> kConfigSectionNames = {"model", "data", "parallel", "optim", "train", "comm"};
inline const std::vector<std::string> kConfigBundledSources = {"kjv", "fashion_mnist", "synthetic", "mf_synthetic"};
inline const std::vector<std::string> kConfigModeNames = {"sync", "ps", "hogwild"};
inline const std::vector<std::string> kConfigOptimizerNames = {"adamw", "sgd"};
inline const std::vector<std::string> kConfigPrecisionNames = {"fp32", "bf16", "fp16"};
inline const std::vector<std::string> kConfigCompressionNames = {"none", "bf16", "fp16", "powersgd", "onebit_adam"};
// MPI is the only backend: CUDA tensors are staged through host memory
// (docs/concepts.md). "auto" picks it.
inline const std::vector<std::string> kConfigBackendNames = {"auto", "mpi"};

bool config_list_has(const std::vector<std::string>& list, const std::string& word);
std::string join_config_words(const std::vector<std::string>& words, const std::string& sep);
/// `text` as a TOML basic string, quotes and escapes included.
std::string quote_toml_string(const std::string& text);
/// The shortest text that reads back as exactly `value`, always a TOML float.
std::string format_toml_float(double value);
/// "paratorch: [section] key problem": every config error names its key.
UsageError config_key_error(const std::string& section, const std::string& key, const std::string& problem);

}  // namespace paratorch::train::config_words
