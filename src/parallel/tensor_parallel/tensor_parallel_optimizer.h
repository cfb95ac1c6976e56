// src/parallel/tensor_parallel/tensor_parallel_optimizer.h — an optimizer over tp shards whose
// state travels as whole tensors.
//
// Every engine whose model holds tp shards (dp×tp, pp×tp, ZeRO×tp) wraps its
// optimizer in this, so checkpoints hold layout-independent state: each
// sharded parameter's state ("<parameter>.<kind>", shaped like the shard) is
// gathered over tp by state_tensors() (collective: every tp rank walks the
// same sorted names) and sliced back by load_state_tensors().
//
// Example:
//   auto opt = with_whole_tp_state(make_optimizer(o, params), model->shard_specs(), shard_shapes, groups.tp());
#pragma once
#include "tensor_parallel/shard.h"
#include "optim/optimizer.h"
#include <paratorch/communicator.h>

#include <map>
#include <memory>

namespace paratorch::tensor_parallel {

class TensorParallelOptimizer : public optim::Optimizer {
 public:
  /// `shard_shapes`: each parameter's shape on this rank, by name.
  TensorParallelOptimizer(std::unique_ptr<optim::Optimizer> inner,
                          std::map<std::string, tensor_parallel::ShardSpec> specs,
                          std::map<std::string, std::vector<int64_t>> shard_shapes, std::shared_ptr<Communicator> tp);

  void step(double lr, double grad_scale = 1.0) override;
  std::map<std::string, torch::Tensor> state_tensors() const override;
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override;
  /// This rank's slices, not gathered.
  std::vector<optim::LocalState> local_state() const override { return inner_->local_state(); }

 private:
  std::unique_ptr<optim::Optimizer> inner_;
  std::map<std::string, tensor_parallel::ShardSpec> specs_;
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::shared_ptr<Communicator> tp_;
};

/// `inner` wrapped in a TensorParallelOptimizer when `tp` has more than one
/// rank, else `inner` itself: the one way engines make their optimizer's
/// state layout-independent.
std::unique_ptr<optim::Optimizer> with_whole_tp_state(std::unique_ptr<optim::Optimizer> inner,
                                                      std::map<std::string, tensor_parallel::ShardSpec> specs,
                                                      std::map<std::string, std::vector<int64_t>> shard_shapes,
                                                      std::shared_ptr<Communicator> tp);

}  // namespace paratorch::tensor_parallel
