// src/train/engine_factory.h — which Engine runs a config's layout.
#pragma once
#include "parallel/engine.h"
#include "train/config.h"

#include <memory>

namespace paratorch::train {

/// The engine for `config`'s layout over `groups` (collective: builds DDP and
/// broadcasts parameters). UsageError for layout features this build lacks.
std::unique_ptr<parallel::Engine> make_engine(const Config& config, const ProcessGroups& groups,
                                              std::shared_ptr<models::BundledModel> model, const data::Dataset& dataset,
                                              torch::Device device);

}  // namespace paratorch::train
