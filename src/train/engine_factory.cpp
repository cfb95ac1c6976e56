// src/train/engine_factory.cpp — which Engine runs a config's layout.
//
// The trainer asks for "an engine" and never branches on the layout itself.
// Combinations of layout features this build does not run are refused
// here with a
// message saying what to set instead, never silently ignored.
#include "train/engine_factory.h"

#include "parallel/ddp/data_parallel_engine.h"
#include "parallel/pipeline/pipeline_engine.h"
#include "parallel/zero/zero_engine.h"
#include "parallel/mixed_precision/precision.h"
#include "train/async_layout.h"
#include "train/engine_options.h"

#include <paratorch/errors.h>

#include <cstdio>

namespace paratorch::train {
namespace {

void refuse(const std::string& key, const std::string& value, const std::string& instead) {
  throw UsageError("paratorch: " + key + " = " + value + " is not supported by this build yet; set " + instead);
}

void require_supported(const Config& config, torch::Device device, const models::BundledModel& model) {
  const auto& p = config.parallel;
  // ZeRO × pp: stage 1 shards each stage's optimizer state over its dp group
  // (pipeline_zero.cpp); stages 2-3 would have to reduce-scatter inside the schedule.
  if (p.zero > 1 && p.pp > 1)
    refuse("[parallel] zero", std::to_string(p.zero) + " with pp = " + std::to_string(p.pp),
           "zero = 1 (optimizer state sharded over dp) for pipelines, or pp = 1 for stages 2-3");
  // Mixed precision is a component of every synchronous engine (with or
  // without tp); the asynchronous modes keep fp32 parameters.
  if (config.train.precision != "fp32" && p.mode != "sync")
    refuse("[train] precision", "\"" + config.train.precision + "\" with mode = \"" + p.mode + "\"",
           "precision = \"fp32\"");
  if (p.zero > 0 && p.mode != "sync")
    refuse("[parallel] zero", std::to_string(p.zero) + " with mode = \"" + p.mode + "\"", "zero = 0");
  // Settings that would do nothing in this layout are refused, not ignored.
  if (p.sequence_parallel && p.tp == 1)
    throw UsageError(
        "paratorch: [parallel] sequence_parallel = true splits activations along the sequence over "
        "the tp group, but tp = 1; set tp > 1 or sequence_parallel = false");
  if (p.activation_checkpointing && p.pp == 1)
    throw UsageError(
        "paratorch: [parallel] activation_checkpointing = true recomputes each pipeline stage's forward "
        "in its backward, but pp = 1 (ZeRO-3 recomputes its blocks in any case); set pp > 1 or "
        "activation_checkpointing = false");
  if (p.mode != "sync" && p.tp > 1)
    throw UsageError("paratorch: [parallel] tp = " + std::to_string(p.tp) + " runs with mode = \"sync\" only; set "
                     "tp = 1 for mode = \"" + p.mode + "\"");
  if (p.mode == "hogwild")
    throw UsageError("paratorch: [parallel] mode = \"hogwild\" runs threads in one process through `paratorch train`, "
                     "not as a step-by-step engine; set mode = \"sync\" or \"ps\"");
  mixed_precision::require_precision_supported(
      mixed_precision::precision_dtype(config.train.precision, "[train] precision"), device, model,
      "[train] precision");
}

std::unique_ptr<parallel::Engine> build_engine(const Config& config, const ProcessGroups& groups,
                                               std::shared_ptr<models::BundledModel> model,
                                               const data::Dataset& dataset, torch::Device device) {
  // Bulk-synchronous parameter server (ps_engine.h); other staleness values it refuses.
  if (config.parallel.mode == "ps") {
    async::check_async_layout(config, groups.world()->size());
    if (config.parallel.staleness != 0)
      throw UsageError("paratorch: [parallel] staleness = " + std::to_string(config.parallel.staleness) +
                       " runs through `paratorch train` only; the step-by-step engine (verify) is bulk-synchronous: "
                       "set staleness = 0");
    return std::make_unique<async::PsEngine>(ps_engine_options(config), groups, std::move(model));
  }
  // The caller's model is whole; tensor parallelism (with pp, ZeRO or dp)
  // needs one built with the tp group, whose layers hold this rank's shards.
  if (groups.layout().tp > 1)
    model = models::make_model(config.model, {groups.tp(), config.parallel.sequence_parallel});
  if (config.parallel.pp > 1)  // pipeline (and naive model parallelism: microbatches = 1), × tp, × ZeRO-1
    return std::make_unique<pipeline::PipelineEngine>(groups, std::move(model), dataset, device,
                                                      pipeline_options(config));
  // ZeRO stages (× tp: each tp shard ZeRO'd over its dp group).
  if (config.parallel.zero > 0)
    return std::make_unique<zero::ZeroEngine>(groups, std::move(model), device, zero_options(config));
  return std::make_unique<parallel::DataParallelEngine>(groups, std::move(model), device,
                                                        data_parallel_options(config));
}

}  // namespace

std::unique_ptr<parallel::Engine> make_engine(const Config& config, const ProcessGroups& groups,
                                              std::shared_ptr<models::BundledModel> model, const data::Dataset& dataset,
                                              torch::Device device) {
  require_supported(config, device, *model);
  if (config.parallel.compression == "onebit_adam" && onebit_freeze_step(config) >= config.train.steps &&
      groups.world()->rank() == 0)
    std::fprintf(stderr, "paratorch: warning: [parallel] onebit_freeze_step = %lld is not below [train] steps = %d: "
                         "1-bit Adam never leaves its warm-up (plain Adam), so nothing is compressed\n",
                 static_cast<long long>(onebit_freeze_step(config)), config.train.steps);
  return build_engine(config, groups, std::move(model), dataset, device);
}

}  // namespace paratorch::train
