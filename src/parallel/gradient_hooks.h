// src/parallel/gradient_hooks.h — "this parameter's gradient of this
// backward is final", the event every gradient reducer is built on.
//
// libtorch has no module hooks, but each leaf tensor's AccumulateGrad node
// takes post-hooks (as PyTorch's DDP Reducer uses): one runs once the
// gradient has been accumulated into .grad. The node must be kept alive
// (the returned handle), or autograd makes a new one without the hook.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

namespace paratorch {

/// Calls `ready` each time a backward pass has accumulated `param`'s
/// gradient. Keep the returned node for as long as the hook must fire.
std::shared_ptr<torch::autograd::Node> on_gradient_ready(const torch::Tensor& param, std::function<void()> ready);

/// Calls `done` once the backward pass now running has finished (queued
/// on the autograd engine; call only from inside a backward, e.g. a hook).
void at_end_of_backward(std::function<void()> done);

}  // namespace paratorch
