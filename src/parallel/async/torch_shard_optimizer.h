// src/parallel/async/torch_shard_optimizer.h — a user's torch::optim
// optimizer as the update rule of a parameter-server shard
// (async::ShardOptimizer).
#pragma once
#include "parallel/async/ps_server.h"
#include <paratorch/async.h>

#include <memory>
#include <string>
#include <vector>

namespace paratorch::async {

/// Re-points `optimizer` (built over `module_params`, never stepped) at the
/// shard: each piece joins the param group of the parameter it is rows of.
/// UsageError when the optimizer was stepped or a parameter is in no group.
ShardOptimizerFactory repointed_optimizer(std::shared_ptr<torch::optim::Optimizer> optimizer,
                                          std::vector<std::pair<std::string, torch::Tensor>> module_params,
                                          std::function<double(int64_t)> lr_at);

/// `make` builds the optimizer over the shard's tensors.
ShardOptimizerFactory built_optimizer(ParameterServer::OptimizerFactory make, std::function<double(int64_t)> lr_at);

}  // namespace paratorch::async
