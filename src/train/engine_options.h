// src/train/engine_options.h — the config edge: [data], [parallel], [optim],
// [train] and [comm] keys turned into each engine's typed options. The
// engines (src/parallel/<name>/) never see a Config; this file is the one
// place that knows which key feeds which option field.
#pragma once
#include "parallel/async/ps_engine.h"
#include "parallel/ddp/data_parallel_engine.h"
#include "parallel/pipeline/pipeline_engine.h"
#include "parallel/zero/memory_estimate.h"
#include "parallel/zero/zero_engine.h"
#include "train/config.h"
#include <paratorch/layout.h>

#include <string>

namespace paratorch::train {

parallel::DataParallelEngineOptions data_parallel_options(const Config& config);
/// The dtype word of the dp gradient reduction: [parallel] compression =
/// "bf16" / "fp16" (16-bit values on the wire), else [train] reduce_precision.
std::string reduce_precision(const Config& config);
/// 1-bit Adam's freeze step: [parallel] onebit_freeze_step, or 20% of the steps.
int64_t onebit_freeze_step(const Config& config);
zero::ZeroEngineOptions zero_options(const Config& config);
pipeline::PipelineEngineOptions pipeline_options(const Config& config);
async::PsEngineOptions ps_engine_options(const Config& config);
zero::MemoryEstimateOptions memory_estimate_options(const Config& config);

/// `message` with every library option field a config key feeds
/// ("ZeroEngineOptions::microbatches") replaced by that key ("[parallel]
/// microbatches"): the library names fields, the CLI speaks keys (it
/// applies this to every usage error it prints, src/cli/main.cpp).
std::string in_config_keys(std::string message);

/// Every pipeline check of `config` on `layout` (resolved) that needs no
/// ranks — schedule, micro-batches, partition, the model's block count — so
/// the CLI fails before MPI starts; with tp > 1 the model's tp checks come
/// first (models::check_tensor_parallel). No-op when layout.pp == 1.
void check_pipeline_config(const Config& config, const Layout& layout);

}  // namespace paratorch::train
