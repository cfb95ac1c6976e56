// src/parallel/zero/optimizer_state.h — reading and writing a torch::optim
// optimizer's per-tensor state by kind, whatever the optimizer.
//
// ZeroRedundancyOptimizer saves the user's optimizer state by parameter name
// (full tensors, as an unsharded optimizer would hold them) although the
// optimizer itself only ever sees flat shards; checkpoint.h saves any
// module's optimizer state by parameter name. libtorch keeps per-tensor
// state in Optimizer::state(), keyed by the tensor's TensorImpl address,
// as one ParamState class per optimizer; this file is the one place that
// knows those classes: which tensors each holds ("kinds": exp_avg, ...),
// and how to get and set them and their step count.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace paratorch::zero {

/// The state tensors `optimizer` keeps per parameter (AdamW/Adam: exp_avg,
/// exp_avg_sq[, max_exp_avg_sq]; SGD with momentum: momentum_buffer;
/// Adagrad: sum; RMSprop: square_avg[, momentum_buffer][, grad_avg]).
/// UsageError naming the optimizer for a type it does not know.
std::vector<std::string> state_kinds(const torch::optim::Optimizer& optimizer);

/// The state of `tensor` by kind (an empty map while it has none yet).
std::map<std::string, torch::Tensor> read_state(const torch::optim::Optimizer& optimizer,
                                                const torch::Tensor& tensor);

/// The step count `optimizer` keeps for `tensor` (0 for SGD, which keeps
/// none, and while the tensor has no state yet).
int64_t read_step(const torch::optim::Optimizer& optimizer, const torch::Tensor& tensor);

/// Sets the state of `tensor`: `kinds` (every state_kinds() entry) and the
/// step count, for optimizers that keep one.
void write_state(torch::optim::Optimizer& optimizer, const torch::Tensor& tensor,
                 const std::map<std::string, torch::Tensor>& kinds, int64_t step);

/// `tensor`'s state under `name`, as checkpoints keep it: "<name>.<kind>"
/// copies and "<name>.step", added to `out` (nothing while it has no state).
void read_named_state(const torch::optim::Optimizer& optimizer, const torch::Tensor& tensor, const std::string& name,
                      std::map<std::string, torch::Tensor>& out);

/// The inverse: `tensor`'s state from `state`'s "<name>.<kind>" and
/// "<name>.step" (none there: left without state). RuntimeFailure naming a
/// tensor whose shape is not `tensor`'s, or a set of kinds that is not the
/// optimizer's.
void write_named_state(torch::optim::Optimizer& optimizer, const torch::Tensor& tensor, const std::string& name,
                       const std::map<std::string, torch::Tensor>& state);

}  // namespace paratorch::zero
