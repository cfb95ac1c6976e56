// src/train/engine_options.cpp — see engine_options.h.
#include "train/engine_options.h"

#include "parallel/pipeline/options.h"
#include "parallel/pipeline/partition.h"
#include "parallel/pipeline/schedule.h"

#include <paratorch/errors.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace paratorch::train {
namespace {

// Each library option field a config key feeds (the functions below, and
// the CLI's World and sampler), so a message about a field reaches the CLI
// user as the key to edit.
const std::vector<std::pair<std::string, std::string>>& field_keys() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {"DataParallelEngineOptions::microbatches", "[parallel] microbatches"},
      {"DataParallelEngineOptions::bucket_mb", "[parallel] bucket_mb"},
      {"DataParallelEngineOptions::global_batch", "[data] global_batch"},
      {"DataParallelEngineOptions::compression", "[parallel] compression"},
      {"DataParallelEngineOptions::compute_dtype", "[train] precision"},
      {"DataParallelEngineOptions::reduce_dtype", "[train] reduce_precision"},
      {"PowerSGDOptions::rank", "[parallel] powersgd_rank"},
      {"PowerSGDOptions::start_step", "[parallel] powersgd_start_step"},
      {"OneBitAdamOptions::freeze_step", "[parallel] onebit_freeze_step"},
      {"OneBitAdamOptions::weight_decay", "[optim] weight_decay"},
      {"OptimizerOptions::kind", "[optim] name"},
      {"ZeroEngineOptions::stage", "[parallel] zero"},
      {"ZeroEngineOptions::compute_dtype", "[train] precision"},
      {"ZeroEngineOptions::reduce_dtype", "[train] reduce_precision"},
      {"ZeroEngineOptions::microbatches", "[parallel] microbatches"},
      {"ZeroEngineOptions::bucket_mb", "[parallel] bucket_mb"},
      {"ZeroEngineOptions::release_freed_memory", "[parallel] zero_release_memory"},
      {"ZeroEngineOptions::global_batch", "[data] global_batch"},
      {"CalibrateOptions::precision", "[train] precision"},
      {"CalibrateOptions::optimizer", "[optim] name"},
      {"PipelineEngineOptions::microbatches", "[parallel] microbatches"},
      {"PipelineEngineOptions::virtual_stages", "[parallel] virtual_stages"},
      {"PipelineEngineOptions::schedule", "[parallel] schedule"},
      {"PipelineEngineOptions::partition", "[parallel] partition"},
      {"PipelineEngineOptions::compute_dtype", "[train] precision"},
      {"PipelineEngineOptions::reduce_dtype", "[train] reduce_precision"},
      {"PipelineEngineOptions::bucket_mb", "[parallel] bucket_mb"},
      {"PipelineEngineOptions::global_batch", "[data] global_batch"},
      {"PsEngineOptions::servers", "[parallel] servers"},
      {"PsEngineOptions::steps", "[train] steps"},
      {"PsEngineOptions::timeout_s", "[comm] timeout_s"},
      {"OptimizerOptions::weight_decay", "[optim] weight_decay"},
      {"LossScalerOptions::initial_scale", "[train] initial_loss_scale"},
      {"LossScalerOptions::growth_interval", "[train] loss_scale_window"},
      {"DDPOptions::bucket_mb", "[parallel] bucket_mb"},
      {"CommOptions::timeout_s", "[comm] timeout_s"},
      {"WorldOptions::threads_per_rank", "[train] threads_per_rank"},
      {"DistributedSampler::global_batch", "[data] global_batch"},
      {"DistributedSampler::dp_size", "dp"},
      {"PipelineShape::stages", "[parallel] pp"},
      {"PipelineShape::microbatches", "[parallel] microbatches"},
      {"PipelineShape::virtual_stages", "[parallel] virtual_stages"},
      {"Layout::pp", "[parallel] pp"},
      {"Layout::tp", "[parallel] tp"},
      {"ModelConfig::", "[model] "},  // the bundled models' fields are the [model] keys
  };
  return table;
}

}  // namespace

std::string in_config_keys(std::string message) {
  for (const auto& [field, key] : field_keys())
    for (auto at = message.find(field); at != std::string::npos; at = message.find(field, at + key.size()))
      message.replace(at, field.size(), key);
  return message;
}

parallel::DataParallelEngineOptions data_parallel_options(const Config& config) {
  parallel::DataParallelEngineOptions o;
  o.global_batch = config.data.global_batch;
  o.microbatches = config.parallel.microbatches;
  o.bucket_mb = config.parallel.bucket_mb;
  o.seed = static_cast<uint64_t>(config.train.seed);
  const auto& p = config.parallel;
  if (p.compression == "powersgd") {
    o.compression.kind = parallel::CompressionKind::kPowerSGD;
    o.compression.powersgd.rank = p.powersgd_rank;
    o.compression.powersgd.start_step = p.powersgd_start_step >= 0 ? p.powersgd_start_step : config.optim.warmup_steps;
    o.compression.powersgd.seed = static_cast<uint64_t>(config.train.seed);
  } else if (p.compression == "onebit_adam") {
    o.compression.kind = parallel::CompressionKind::kOneBitAdam;
    o.compression.onebit.freeze_step = onebit_freeze_step(config);
  }
  o.compute_dtype = mixed_precision::precision_dtype(config.train.precision, "[train] precision");
  o.loss_scaling = config.train.precision == "fp16";
  o.scaler.initial_scale = config.train.initial_loss_scale;
  o.scaler.growth_interval = config.train.loss_scale_window;
  o.reduce_dtype = mixed_precision::precision_dtype(reduce_precision(config), "[train] reduce_precision");
  return o;
}

int64_t onebit_freeze_step(const Config& config) {
  const int given = config.parallel.onebit_freeze_step;
  return given >= 0 ? given : std::max(1, config.train.steps / 5);
}

std::string reduce_precision(const Config& config) {
  const auto& c = config.parallel.compression;
  return c == "bf16" || c == "fp16" ? c : config.train.reduce_precision;
}

zero::ZeroEngineOptions zero_options(const Config& config) {
  zero::ZeroEngineOptions o;
  o.stage = config.parallel.zero;
  o.compute_dtype = mixed_precision::precision_dtype(config.train.precision, "[train] precision");
  o.global_batch = config.data.global_batch;
  o.microbatches = config.parallel.microbatches;
  o.bucket_mb = config.parallel.bucket_mb;
  o.seed = static_cast<uint64_t>(config.train.seed);
  o.loss_scaling = config.train.precision == "fp16";
  o.scaler.initial_scale = config.train.initial_loss_scale;
  o.scaler.growth_interval = config.train.loss_scale_window;
  o.reduce_dtype = mixed_precision::precision_dtype(reduce_precision(config), "[train] reduce_precision");
  o.release_freed_memory = config.parallel.zero_release_memory;
  return o;
}

pipeline::PipelineEngineOptions pipeline_options(const Config& config) {
  pipeline::PipelineEngineOptions o;
  o.global_batch = config.data.global_batch;
  o.microbatches = config.parallel.microbatches;
  o.schedule = parallel::pipeline::schedule_from_name(config.parallel.schedule);
  o.virtual_stages = pipeline::shape_for(config.parallel.schedule, 1, 1, config.parallel.virtual_stages).virtual_stages;
  o.partition = pipeline::BlockPartition::parse(config.parallel.partition);
  o.activation_checkpointing = config.parallel.activation_checkpointing;
  o.zero = config.parallel.zero;
  o.seed = static_cast<uint64_t>(config.train.seed);
  o.model_name = config.model.name;
  o.compute_dtype = mixed_precision::precision_dtype(config.train.precision, "[train] precision");
  o.loss_scaling = config.train.precision == "fp16";
  o.scaler.initial_scale = config.train.initial_loss_scale;
  o.scaler.growth_interval = config.train.loss_scale_window;
  o.reduce_dtype = mixed_precision::precision_dtype(reduce_precision(config), "[train] reduce_precision");
  o.bucket_mb = config.parallel.bucket_mb;
  return o;
}

void check_pipeline_config(const Config& config, const Layout& layout) {
  if (layout.pp == 1) return;
  // pp x tp: the model's tp errors first (they name the model's sizes), then the pipeline's.
  models::check_tensor_parallel(config.model, layout.tp, config.parallel.sequence_parallel);
  const pipeline::PipelineEngineOptions o = pipeline_options(config);
  o.validate(layout);
  const auto blocks = models::make_model(config.model)->blocks();
  pipeline::check_block_count(static_cast<int>(blocks.size()), layout.pp, o.virtual_stages,
                              parallel::pipeline::schedule_name(o.schedule), o.model_name);
  if (o.partition.by == PartitionBy::kSplitPoints)
    pipeline::parse_cuts(o.partition.text(), static_cast<int>(blocks.size()), layout.pp * o.virtual_stages);
}

async::PsEngineOptions ps_engine_options(const Config& config) {
  async::PsEngineOptions o;
  o.servers = config.parallel.servers;
  o.seed = static_cast<uint64_t>(config.train.seed);
  o.steps = config.train.steps;
  o.timeout_s = config.comm.timeout_s;
  return o;
}

zero::MemoryEstimateOptions memory_estimate_options(const Config& config) {
  zero::MemoryEstimateOptions o;
  o.model = config.model;
  o.global_batch = config.data.global_batch;
  o.microbatches = config.parallel.microbatches;
  o.stage = config.parallel.zero;
  o.optimizer = config.optim.name;
  o.precision = config.train.precision;
  return o;
}

}  // namespace paratorch::train
