// src/parallel/gradient_hooks.cpp — see gradient_hooks.h.
#include "parallel/gradient_hooks.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace paratorch {

std::shared_ptr<torch::autograd::Node> on_gradient_ready(const torch::Tensor& param, std::function<void()> ready) {
  auto accumulator = torch::autograd::impl::grad_accumulator(param);
  accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
      [ready = std::move(ready)](const torch::autograd::variable_list& outputs,
                                 const torch::autograd::variable_list& /*inputs*/) {
        ready();
        return outputs;
      }));
  return accumulator;
}

void at_end_of_backward(std::function<void()> done) {
  torch::autograd::Engine::get_default_engine().queue_callback(std::move(done));
}

}  // namespace paratorch
