// src/parallel/zero/fsdp_unit.cpp — one fully sharded unit at run time:
// gather, compute, free; in backward gather, recompute, reduce-scatter.
//
// ZeRO stage 3 (Rajbhandari et al., 2019, §5.3) without module hooks: the
// unit runs inside a custom autograd function whose inputs are the unit's
// input and its flat shard. Forward (autograd off) all-gathers the unit,
// runs it, and frees it (reshard_after_forward), keeping only its input.
// Backward gathers it again, recomputes the unit with autograd from the
// saved input (activation checkpointing, Chen et al. 2016), differentiates
// it, frees it, and starts the reduce-scatter of the unit's full gradient
// through the comm hook (the same seam as DDP's and the engines'). It runs
// while the next unit back computes; the previous one is finished (added
// into flat_param.grad, where the user's optimizer reads it) before a new
// one starts, and the last when the backward pass ends. With `prefetch` the next unit's
// all-gather (previous unit's, in backward) is issued before this unit
// computes, so the two overlap on the communication thread (the order of
// the first forward is used, as PyTorch FSDP records it). Tied weights
// that several units use live in the shared unit (fsdp_state.h): gathered
// with the first unit using them, differentiated in each user's backward,
// reduce-scattered once in finish_backward().
#include "parallel/zero/fsdp_state.h"

#include "parallel/gradient_hooks.h"

#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch {

void FsdpState::gather_async(size_t index) {
  Unit& u = units[index];
  if (u.flat.started() && u.gathered_version == u.shard._version()) return;
  if (u.flat.started()) {  // stale: the optimizer stepped since this gather began
    u.flat.finish(pool);
    u.flat.release(pool);
  }
  torch::NoGradGuard no_grad;
  u.gathered_version = u.shard._version();
  u.flat.start(*group, u.shard.detach().to(options.mixed_precision.param_dtype, false, /*copy=*/true), false, pool);
}

void FsdpState::ensure_gathered(size_t index) {
  gather_async(index);
  units[index].flat.finish(pool);
}

void FsdpState::release(size_t index) { units[index].flat.release(pool); }

void FsdpState::prefetch(size_t index, int offset) {
  if (!options.prefetch) return;
  auto it = std::find(order.begin(), order.end(), index);
  if (it == order.end()) return;
  const auto pos = static_cast<int64_t>(it - order.begin()) + offset;
  if (pos >= 0 && pos < static_cast<int64_t>(order.size())) gather_async(order[static_cast<size_t>(pos)]);
}

// At most one reduce-scatter is left in flight: the previous unit's is
// finished before this one's full gradient buffer is taken, so it overlaps
// this unit's recompute and backward, and no more than two full gradient
// buffers are live (as ZeroEngine's stage 3 and PyTorch FSDP bound theirs).
void FsdpState::reduce_scatter_async(size_t index, const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  finish_reductions();
  Unit& u = units[index];
  auto full = pool.take(u.layout->padded_numel(), torch::kFloat, u.shard.device()).zero_();
  const auto views = u.layout->views(full);
  for (size_t k = 0; k < grads.size(); ++k)
    if (grads[k].defined()) views[k].copy_(grads[k]);
  pending.push_back(zero::ShardReduction::start(index, std::move(full), *u.layout, *group, hook, pool));
  if (!finish_queued) {  // the last unit's reduce-scatter: waited for when backward ends
    finish_queued = true;
    at_end_of_backward([this] { finish_backward(); });
  }
}

void FsdpState::finish_reductions() {
  for (auto& r : pending) r.finish(&units[r.unit].shard.mutable_grad(), pool);
  pending.clear();
}

void FsdpState::gather_shared_for(size_t index) {
  if (shared && !units[index].shared_members.empty()) ensure_gathered(*shared);
}

void FsdpState::add_shared_gradients(size_t index, const std::vector<torch::Tensor>& grads) {
  if (grads.empty()) return;
  torch::NoGradGuard no_grad;
  Unit& s = units[*shared];
  if (!shared_grad.defined())
    shared_grad = pool.take(s.layout->padded_numel(), torch::kFloat, s.shard.device()).zero_();
  const auto views = s.layout->views(shared_grad);
  const auto& members = units[index].shared_members;
  for (size_t k = 0; k < grads.size(); ++k)
    if (grads[k].defined()) views[members[k]].add_(grads[k]);
}

void FsdpState::finish_backward() {
  finish_reductions();
  if (shared_grad.defined()) {
    const Unit& s = units[*shared];
    pending.push_back(zero::ShardReduction::start(*shared, std::move(shared_grad), *s.layout, *group, hook, pool));
    shared_grad = torch::Tensor();
    finish_reductions();
  }
  if (shared) release(*shared);
  finish_queued = false;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

FsdpState* state_of(AutogradContext* ctx) {
  return reinterpret_cast<FsdpState*>(static_cast<intptr_t>(ctx->saved_data["state"].toInt()));
}

torch::Tensor to_compute(const torch::Tensor& x, torch::ScalarType dtype) {
  return x.is_floating_point() && x.scalar_type() != dtype ? x.to(dtype) : x;
}

struct UnitFunction : torch::autograd::Function<UnitFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& shard,
                               int64_t state_address, int64_t index) {
    (void)shard;  // an input only so that backward can hand it its gradient
    auto* state = reinterpret_cast<FsdpState*>(static_cast<intptr_t>(state_address));
    const auto u = static_cast<size_t>(index);
    ctx->saved_data["state"] = state_address;
    ctx->saved_data["index"] = index;
    ctx->save_for_backward({input});
    state->gather_shared_for(u);
    state->ensure_gathered(u);
    state->prefetch(u, +1);
    auto output = state->units[u].module.forward(to_compute(input, state->options.mixed_precision.param_dtype));
    if (state->options.reshard_after_forward) state->release(u);
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* state = state_of(ctx);
    const auto u = static_cast<size_t>(ctx->saved_data["index"].toInt());
    auto& unit = state->units[u];
    const auto input = ctx->get_saved_variables()[0];
    state->gather_shared_for(u);
    state->ensure_gathered(u);
    state->prefetch(u, -1);
    variable_list grads;
    torch::Tensor x = input.detach();
    {
      torch::AutoGradMode enable(true);
      const bool input_grad = x.is_floating_point() && input.requires_grad();
      if (input_grad) x.requires_grad_(true);
      auto y = unit.module.forward(to_compute(x, state->options.mixed_precision.param_dtype));
      variable_list wrt;
      if (input_grad) wrt.push_back(x);
      for (const auto& p : unit.params)
        if (p.requires_grad()) wrt.push_back(p);
      const auto* tied = state->shared ? &state->units[*state->shared].params : nullptr;
      for (size_t m : unit.shared_members)
        if ((*tied)[m].requires_grad()) wrt.push_back((*tied)[m]);
      auto computed = torch::autograd::grad({y}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                            /*create_graph=*/false, /*allow_unused=*/true);
      size_t next = 0;
      torch::Tensor input_gradient = input_grad ? computed[next++] : torch::Tensor();
      std::vector<torch::Tensor> param_grads;
      for (const auto& p : unit.params) param_grads.push_back(p.requires_grad() ? computed[next++] : torch::Tensor());
      std::vector<torch::Tensor> tied_grads;
      for (size_t m : unit.shared_members)
        tied_grads.push_back((*tied)[m].requires_grad() ? computed[next++] : torch::Tensor());
      // The shard's gradient arrives through finish_reductions(), not autograd.
      grads = {input_gradient, torch::Tensor(), torch::Tensor(), torch::Tensor()};
      state->release(u);
      state->add_shared_gradients(u, tied_grads);
      state->reduce_scatter_async(u, param_grads);
    }
    return grads;
  }
};

}  // namespace

FsdpUnitImpl::FsdpUnitImpl(std::shared_ptr<FsdpState> state, size_t index)
    : state_(std::move(state)), index_(index) {
  register_parameter("flat_param", state_->units[index_].shard);
}

torch::Tensor FsdpUnitImpl::forward(const torch::Tensor& input) {
  auto& order = state_->order;
  if (std::find(order.begin(), order.end(), index_) == order.end()) order.push_back(index_);
  return UnitFunction::apply(input, state_->units[index_].shard,
                             static_cast<int64_t>(reinterpret_cast<intptr_t>(state_.get())),
                             static_cast<int64_t>(index_));
}

const std::string& FsdpUnitImpl::name() const { return state_->units[index_].name; }

}  // namespace paratorch
