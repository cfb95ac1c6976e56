// src/train/engine_factory.cpp — which Engine runs a config's layout.
//
// The trainer asks for "an engine" and never branches on the layout itself.
// Layout features that later issues bring (pipeline, tensor parallelism,
// ZeRO, mixed precision, asynchronous modes) are refused here with a
// message saying what to set instead, never silently ignored.
#include "train/data_parallel_engine.h"
#include "train/engine.h"
#include "train/zero_engine.h"

#include <paratorch/errors.h>

namespace paratorch::train {
namespace {

void refuse(const std::string& key, const std::string& value, const std::string& instead) {
  throw UsageError("paratorch: " + key + " = " + value + " is not supported by this build yet; set " + instead);
}

void require_supported(const Config& config, torch::Device device) {
  const auto& p = config.parallel;
  if (p.pp > 1) refuse("[parallel] pp", std::to_string(p.pp), "pp = 1");
  if (p.tp > 1) refuse("[parallel] tp", std::to_string(p.tp), "tp = 1");
  if (p.mode != "sync") refuse("[parallel] mode", "\"" + p.mode + "\"", "mode = \"sync\"");
  zero::require_precision_supported(config.train.precision, device);
  if (config.comm.backend == "nccl" && !device.is_cuda())
    throw UsageError("paratorch: [comm] backend = \"nccl\" needs CUDA devices and this rank runs on " +
                     device.str() + "; set backend = \"auto\" or \"mpi\"");
}

}  // namespace

std::unique_ptr<Engine> make_engine(const Config& config, const ProcessGroups& groups,
                                    std::shared_ptr<models::BundledModel> model, const data::Dataset& dataset,
                                    torch::Device device) {
  require_supported(config, device);
  // ZeRO stages, and any stage in mixed precision (fp32 masters), run on ZeroEngine.
  if (config.parallel.zero > 0 || config.train.precision != "fp32") {
    ZeroOptions zero;
    zero.stage = config.parallel.zero;
    zero.precision = config.train.precision;
    zero.global_batch = config.data.global_batch;
    zero.microbatches = config.parallel.microbatches;
    zero.bucket_mb = config.parallel.bucket_mb;
    zero.seed = static_cast<uint64_t>(config.train.seed);
    zero.loss_scaling = config.train.precision == "fp16";
    return std::make_unique<ZeroEngine>(groups, std::move(model), dataset, device, zero);
  }
  DataParallelOptions options;
  options.global_batch = config.data.global_batch;
  options.microbatches = config.parallel.microbatches;
  options.bucket_mb = config.parallel.bucket_mb;
  options.seed = static_cast<uint64_t>(config.train.seed);
  return std::make_unique<DataParallelEngine>(groups, std::move(model), dataset, device, options);
}

}  // namespace paratorch::train
