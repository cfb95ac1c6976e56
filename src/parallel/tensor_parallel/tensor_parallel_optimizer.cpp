// src/parallel/tensor_parallel/tensor_parallel_optimizer.cpp — see tensor_parallel_optimizer.h.
#include "parallel/tensor_parallel/tensor_parallel_optimizer.h"

#include "tensor_parallel/full_tensors.h"

namespace paratorch::tensor_parallel {

TensorParallelOptimizer::TensorParallelOptimizer(std::unique_ptr<optim::Optimizer> inner,
                                                 std::map<std::string, tensor_parallel::ShardSpec> specs,
                                                 std::map<std::string, std::vector<int64_t>> shard_shapes,
                                                 std::shared_ptr<Communicator> tp)
    : inner_(std::move(inner)), specs_(std::move(specs)), shapes_(std::move(shard_shapes)), tp_(std::move(tp)) {}

void TensorParallelOptimizer::step(double lr, double grad_scale) {
  inner_->step(lr, grad_scale);
  steps_ = inner_->steps_taken();
}

std::map<std::string, torch::Tensor> TensorParallelOptimizer::state_tensors() const {
  auto state = inner_->state_tensors();
  for (auto& [name, t] : state)
    if (const auto* spec = tensor_parallel::spec_of_state(name, t.sizes(), false, specs_, shapes_))
      t = tensor_parallel::gather_full(t, *spec, *tp_);
  return state;
}

void TensorParallelOptimizer::load_state_tensors(const std::map<std::string, torch::Tensor>& state) {
  auto local = state;
  for (auto& [name, t] : local)
    if (const auto* spec = tensor_parallel::spec_of_state(name, t.sizes(), true, specs_, shapes_)) t = spec->slice(t);
  inner_->load_state_tensors(local);
  steps_ = inner_->steps_taken();
}

std::unique_ptr<optim::Optimizer> with_whole_tp_state(std::unique_ptr<optim::Optimizer> inner,
                                                      std::map<std::string, tensor_parallel::ShardSpec> specs,
                                                      std::map<std::string, std::vector<int64_t>> shard_shapes,
                                                      std::shared_ptr<Communicator> tp) {
  if (tp == nullptr || tp->size() == 1) return inner;
  return std::make_unique<TensorParallelOptimizer>(std::move(inner), std::move(specs), std::move(shard_shapes),
                                                   std::move(tp));
}

}  // namespace paratorch::tensor_parallel
