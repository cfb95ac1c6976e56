// src/parallel/pipeline/pipeline_zero.h — ZeRO stage 1 for pipeline stages (zero = 1 × pp > 1).
//
// Each pipeline stage's optimizer state is partitioned over the stage's dp
// replicas (ZeRO shards across the dp group of each model-parallel shard,
// Rajbhandari et al. 2019 §5.1, §7). The pipeline engine keeps its own
// gradient path (dp-averaged flat all-reduce, tied weights summed over the
// embedding group), so the model's parameters and gradients stay whole and
// clipping needs no change; the optimizer alone shards: the parameters live
// in ZeRO's flat buffers (zero::FlatShards, parallel/zero/flat_shards.h,
// without its reducer), and before each update it takes this rank's shard
// of the (clipped) gradients, steps its shard (optimizer state for 1/dp of
// the stage only), then all-gathers the updated shards into every replica's parameters.
// Checkpoints hold whole tensors (ShardedOptimizer gathers over dp;
// PipelineEngine::full_optimizer_state then broadcasts over pp).
#pragma once
#include "optim/optimizer.h"
#include <paratorch/communicator.h>

#include <memory>

namespace paratorch::pipeline {

/// A ZeRO-1 optimizer over `params` (whole tensors with .grad, fp32 or all
/// of one dtype), sharded over `dp` (a group of one: one shard). The
/// parameters become views of zero::FlatShards' flat buffers.
std::unique_ptr<optim::Optimizer> make_zero1_optimizer(const optim::OptimizerOptions& options,
                                                       optim::NamedTensors params, std::shared_ptr<Communicator> dp);

}  // namespace paratorch::pipeline
