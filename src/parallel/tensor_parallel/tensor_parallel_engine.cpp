// src/parallel/tensor_parallel/tensor_parallel_engine.cpp — see tensor_parallel_engine.h.
#include "parallel/tensor_parallel/tensor_parallel_engine.h"

#include "parallel/finalize_grads.h"
#include "parallel/grad_norm.h"
#include "tensor_parallel/full_tensors.h"
#include "parallel/tensor_parallel/tensor_parallel_optimizer.h"
#include <paratorch/errors.h>

namespace paratorch::train {

TensorParallelEngine::TensorParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                                           torch::Device device, DataParallelEngineOptions options,
                                           bool sequence_parallel)
    : DataParallelEngine(groups, model, device, options),
      groups_(groups),
      specs_(model->shard_specs()),
      sequence_parallel_(sequence_parallel) {}

double TensorParallelEngine::forward_backward(const std::vector<models::Batch>& microbatches) {
  const double loss = DataParallelEngine::forward_backward(microbatches);
  parallel::FinalizeGradients f;  // dp was DDP's; what is left is the sequence-parallel partial sums
  for (const auto& item : model().named_parameters(true))
    if (specs_.at(item.key()).partial_grad && item.value().grad().defined()) f.partial_over_tp.push_back(item.value().grad());
  f.tp = groups_.tp().get();
  parallel::finalize_gradients(f);
  return loss;
}

SumAcross TensorParallelEngine::grad_norm_across() {
  if (groups_.layout().tp == 1) return nullptr;
  return [this](double local) {
    std::vector<parallel::NormEntry> entries;
    for (const auto& item : model().named_parameters(true))
      entries.push_back({item.value().grad(), specs_.at(item.key())});
    return parallel::sum_squares_across(local, entries, {nullptr, groups_.tp().get()});
  };
}

std::map<std::string, torch::Tensor> TensorParallelEngine::full_parameters() {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model().named_parameters(true))
    out[item.key()] = tensor_parallel::gather_full(item.value(), specs_.at(item.key()), *groups_.tp());
  return out;
}

void TensorParallelEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& item : model().named_parameters(true)) {
    const auto& spec = specs_.at(item.key());
    auto it = tensors.find(item.key());
    if (it == tensors.end())
      throw RuntimeFailure("paratorch: checkpoint has no tensor '" + item.key() + "' for this model");
    const auto full_shape = spec.full_shape(item.value().sizes());
    if (it->second.sizes() != torch::IntArrayRef(full_shape))
      throw RuntimeFailure("paratorch: checkpoint tensor '" + item.key() + "' has shape " +
                           c10::str(it->second.sizes()) + " but the model needs " + c10::str(full_shape));
    item.value().copy_(spec.slice(it->second));
  }
}

int64_t TensorParallelEngine::parameter_count() {
  int64_t n = 0;
  for (const auto& item : model().named_parameters(true))
    n += item.value().numel() * (specs_.at(item.key()).sharded() ? groups_.layout().tp : 1);
  return n;
}

std::unique_ptr<Optimizer> TensorParallelEngine::build_optimizer(const OptimizerOptions& options) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : model().named_parameters(true))
    shapes[item.key()] = item.value().sizes().vec();
  return with_whole_tp_state(make_optimizer(options, named_parameters()), specs_, std::move(shapes), groups_.tp());
}

std::string TensorParallelEngine::describe() {
  return "tensor parallel: tp=" + std::to_string(groups_.layout().tp) +
         (sequence_parallel_ ? " with sequence parallelism" : "") + "; " + DataParallelEngine::describe();
}

}  // namespace paratorch::train
