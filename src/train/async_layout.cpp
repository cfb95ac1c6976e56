// src/train/async_layout.cpp — see async_layout.h.
#include "train/async_layout.h"

#include <paratorch/errors.h>

#include <string>

namespace paratorch::async {
namespace {

[[noreturn]] void refuse(const std::string& what) { throw UsageError("paratorch: " + what); }

void require_plain_layout(const train::Config& config) {
  const auto& p = config.parallel;
  const std::string mode = "mode = \"" + p.mode + "\"";
  if (p.pp > 1) refuse("[parallel] pp = " + std::to_string(p.pp) + " cannot be combined with " + mode + "; set pp = 1");
  if (p.tp > 1) refuse("[parallel] tp = " + std::to_string(p.tp) + " cannot be combined with " + mode + "; set tp = 1");
  if (p.microbatches > 1)
    refuse("[parallel] microbatches = " + std::to_string(p.microbatches) + " cannot be combined with " + mode +
           " (workers push one gradient per step); set microbatches = 1");
  if (p.zero > 0)
    refuse("[parallel] zero = " + std::to_string(p.zero) + " cannot be combined with " + mode + "; set zero = 0");
  if (config.train.precision != "fp32")
    refuse("[train] precision = \"" + config.train.precision + "\" cannot be combined with " + mode +
           "; set precision = \"fp32\"");
  // Workers push fp32 gradients whole; nothing else here would take effect.
  if (config.train.reduce_precision != "fp32")
    refuse("[train] reduce_precision = \"" + config.train.reduce_precision + "\" cannot be combined with " + mode +
           " (workers push fp32 gradients); set reduce_precision = \"fp32\"");
  if (p.compression != "none")
    refuse("[parallel] compression = \"" + p.compression + "\" cannot be combined with " + mode +
           " (workers push fp32 gradients); set compression = \"none\"");
  if (p.sequence_parallel)
    refuse("[parallel] sequence_parallel = true cannot be combined with " + mode +
           " (it needs tp > 1); set sequence_parallel = false");
  if (p.activation_checkpointing)
    refuse("[parallel] activation_checkpointing = true cannot be combined with " + mode +
           " (it recomputes pipeline stages); set activation_checkpointing = false");
}

}  // namespace

int hogwild_threads(const train::Config& config) {
  return config.train.threads_per_rank > 0 ? config.train.threads_per_rank : 2;
}

void check_async_layout(const train::Config& config, int world_size) {
  const auto& p = config.parallel;
  if (p.mode == "sync") return;
  require_plain_layout(config);
  if (p.mode == "hogwild") {
    if (world_size != 1)
      refuse("[parallel] mode = \"hogwild\" runs in one process (threads share one parameter copy) but the job has " +
             std::to_string(world_size) + " ranks; use --nproc 1, or mode = \"ps\" across ranks");
    if (config.optim.name != "sgd")
      refuse("[optim] name = \"" + config.optim.name + "\" cannot be combined with mode = \"hogwild\", which "
             "updates with plain lock-free SGD; set name = \"sgd\"");
    return;
  }
  if (p.servers >= world_size)
    refuse("[parallel] servers = " + std::to_string(p.servers) + " must be below the world size " +
           std::to_string(world_size) + " (at least one rank must be a worker); lower servers or add ranks");
  const int workers = world_size - p.servers;
  // The workers are the replicas: dp is theirs to set, never accepted and ignored.
  if (p.dp != 0 && p.dp != workers)
    refuse("[parallel] dp = " + std::to_string(p.dp) + " but mode = \"ps\" has " + std::to_string(workers) +
           " workers (world " + std::to_string(world_size) + " - servers " + std::to_string(p.servers) +
           "), which are its data-parallel replicas; set dp = \"auto\" or dp = " + std::to_string(workers));
  if (config.data.global_batch % workers != 0)
    refuse("[data] global_batch = " + std::to_string(config.data.global_batch) + " must divide over the " +
           std::to_string(workers) + " ps workers (world " + std::to_string(world_size) + " - servers " +
           std::to_string(p.servers) + ")");
}

}  // namespace paratorch::async
