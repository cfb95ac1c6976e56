// src/checkpoint/optimizer_state.cpp — torch::optim state by parameter name
// (paratorch/checkpoint.h). libtorch keys an optimizer's state by the
// address of each parameter's TensorImpl, which means nothing in another
// process; checkpoints need names. What each optimizer kind keeps is known
// in one place, parallel/zero/optimizer_state.h; this file only names it.
#include <paratorch/checkpoint.h>
#include <paratorch/errors.h>

#include "parallel/zero/optimizer_state.h"

#include <vector>

namespace paratorch {
namespace {

/// The parameters of every group of `optimizer`, by the name `module` gives them.
std::vector<std::pair<std::string, torch::Tensor>> named_optimizer_params(const torch::optim::Optimizer& optimizer,
                                                                          const torch::nn::Module& module) {
  std::map<const void*, std::string> name_of;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    name_of[item.value().unsafeGetTensorImpl()] = item.key();
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) {
      auto it = name_of.find(p.unsafeGetTensorImpl());
      if (it == name_of.end())
        throw UsageError("paratorch: the optimizer holds a parameter of shape " + c10::str(p.sizes()) +
                         " that the module does not have; pass the module whose parameters the optimizer updates");
      out.emplace_back(it->second, p);
    }
  return out;
}

}  // namespace

std::map<std::string, torch::Tensor> optimizer_state_by_name(const torch::optim::Optimizer& optimizer,
                                                             const torch::nn::Module& module) {
  zero::state_kinds(optimizer);  // refuses optimizers whose state it cannot name
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, p] : named_optimizer_params(optimizer, module))
    zero::read_named_state(optimizer, p, name, out);
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& module,
                          const std::map<std::string, torch::Tensor>& state) {
  zero::state_kinds(optimizer);
  for (const auto& [name, p] : named_optimizer_params(optimizer, module))
    zero::write_named_state(optimizer, p, name, state);
}

}  // namespace paratorch
