// src/parallel/zero/zero_redundancy_impl.h — ZeroRedundancyOptimizer's state
// (internal to src/parallel/zero/zero_*.cpp).
//
// The flat buffers, the masters, the gradient path and the publication of
// updated parameters are zero::FlatShards (flat_shards.h), the same as under
// the trainer's ZeroEngine; what is the public optimizer's own is the user's
// torch::optim optimizer over the masters (one 1-D fp32 shard per buffer),
// clipping by the whole model's norm, and the state by parameter name.
#pragma once
#include <paratorch/zero.h>

#include "parallel/zero/flat_shards.h"

namespace paratorch {

struct ZeroRedundancyOptimizer::Impl {
  std::shared_ptr<torch::nn::Module> module;  // null when built over named parameters
  std::shared_ptr<Communicator> group;
  ZeroRedundancyOptimizerOptions options;
  std::vector<torch::Tensor> params;  // trainable, registration order
  std::vector<std::string> names;
  std::unique_ptr<zero::FlatShards> shards;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<std::string> kinds;  // the optimizer's state tensors
  int64_t steps = 0;
  double last_grad_norm = -1;  // before clipping, options.max_grad_norm > 0

  void init(std::shared_ptr<Communicator> dp_group, const OptimizerFactory& factory,
            const ZeroRedundancyOptimizerOptions& opts, const std::string& source);
  /// options.max_grad_norm > 0: the shards' gradients clipped by the whole
  /// model's norm (zero_grad_clip.cpp); sets last_grad_norm.
  void clip_gradients();
};

}  // namespace paratorch
