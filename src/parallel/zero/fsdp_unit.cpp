// src/parallel/zero/fsdp_unit.cpp — one fully sharded unit at run time:
// gather, compute, free; in backward gather, recompute, reduce-scatter.
//
// ZeRO stage 3 (Rajbhandari et al., 2019, §5.3) without module hooks: the
// unit runs inside a custom autograd function whose inputs are the unit's
// input and the state's anchor. Forward (autograd off) all-gathers the unit,
// runs it, and frees it (reshard_after_forward), keeping only its input.
// Backward gathers it again, recomputes the unit with autograd from the
// saved input (activation checkpointing, Chen et al. 2016), differentiates
// it, frees it, and starts the reduce-scatter of the unit's full gradient
// through the comm hook (the same seam as DDP's and stages 1-2's). It runs
// while the next unit back recomputes; it is finished (added into the
// shard's gradient, where the optimizer reads it) before that unit's
// gradients are taken, and the last when the backward pass ends, so at most
// two full gradient buffers are ever live. With `prefetch` the next unit's
// all-gather (previous unit's, in backward) is issued before this unit
// computes, so the two overlap on the communication thread (the order of
// the first forward is used, as PyTorch FSDP records it). Tied weights
// that several units use live in the shared unit (fsdp_state.h): gathered
// with the first unit using them, differentiated in each user's backward,
// reduce-scattered once in finish_backward().
//
// Memory: in fp32 the parameters' .grad are views of the unit's flat
// gradient buffer (and the tied ones' of shared_grad) while its backward
// runs, so autograd accumulates in place (AccumulateGrad adds into a
// defined .grad) and no second, per-parameter copy of the gradients exists;
// a 16-bit unit's gradients are widened into the buffer instead.
#include "parallel/zero/fsdp_state.h"

#include "parallel/gradient_hooks.h"
#include "report/trace.h"

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
  // In the shard's own dtype the gather reads the shard itself, which
  // nothing writes before the optimizer step; otherwise a pooled copy.
  const auto dtype = options.mixed_precision.param_dtype;
  if (dtype == u.shard.scalar_type()) return u.flat.start(*group, u.shard.detach(), false, pool);
  auto src = pool.take(u.shard.numel(), dtype, u.shard.device());
  src.copy_(u.shard.detach());
  u.flat.start(*group, std::move(src), true, pool);
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

void FsdpState::reduce_scatter_async(size_t index, torch::Tensor full) {
  const Unit& u = units[index];
  pending.push_back(zero::ShardReduction::start(index, std::move(full), *u.layout, *group, hook, pool));
  if (!finish_queued) {  // the last unit's reduce-scatter: waited for when backward ends
    finish_queued = true;
    at_end_of_backward([this] { finish_backward(); });
  }
}

void FsdpState::finish_reductions(bool wait) {
  std::vector<zero::ShardReduction> still;
  for (auto& r : pending) {
    if (!wait && r.work && !r.work->is_completed())
      still.push_back(std::move(r));
    else
      r.finish(&units[r.unit].shard.mutable_grad(), pool);
  }
  pending = std::move(still);
}

void FsdpState::gather_shared_for(size_t index) {
  if (shared && !units[index].shared_members.empty()) ensure_gathered(*shared);
}

void FsdpState::finish_backward() {
  finish_reductions();
  if (shared_grad.defined()) {
    reduce_scatter_async(*shared, std::move(shared_grad));
    shared_grad = torch::Tensor();
    finish_reductions();
  }
  if (shared) release(*shared);
  finish_queued = false;
  trim();
}

namespace {

// The tensors a unit's backward differentiates for: its input where it
// needs a gradient, its parameters and the tied ones it uses that require
// one. `slots[k]` is the gradient slot of params[k] (undefined: none).
struct Targets {
  std::vector<torch::Tensor> params, slots;
};

Targets targets_of(FsdpState& state, size_t index, const torch::Tensor& full) {
  FsdpState::Unit& unit = state.units[index];
  Targets t;
  const auto views = unit.layout->views(full);
  for (size_t k = 0; k < unit.params.size(); ++k)
    if (unit.params[k].requires_grad()) t.params.push_back(unit.params[k]), t.slots.push_back(views[k]);
  if (unit.shared_members.empty()) return t;
  FsdpState::Unit& tied = state.units[*state.shared];
  if (!state.shared_grad.defined())
    state.shared_grad = state.pool.take(tied.layout->padded_numel(), torch::kFloat, tied.shard.device()).zero_();
  const auto shared_views = tied.layout->views(state.shared_grad);
  for (size_t m : unit.shared_members)
    if (tied.params[m].requires_grad()) t.params.push_back(tied.params[m]), t.slots.push_back(shared_views[m]);
  return t;
}

}  // namespace

torch::Tensor FsdpState::differentiate(size_t index, const torch::Tensor& y, const torch::Tensor& grad_output,
                                       const torch::Tensor& x) {
  // The previous unit's reduce-scatter overlapped this recompute; finishing
  // it now gives its full gradient buffer back before this unit's is taken.
  finish_reductions();
  trim();
  Unit& unit = units[index];
  auto full = pool.take(unit.layout->padded_numel(), torch::kFloat, unit.shard.device()).zero_();
  Targets t = targets_of(*this, index, full);
  std::vector<torch::Tensor> wrt = t.params;
  if (x.defined()) wrt.push_back(x);
  torch::Tensor input_gradient;
  if (!wrt.empty() && y.requires_grad()) {
    const bool in_place = options.mixed_precision.param_dtype == torch::kFloat;
    if (in_place) {
      for (size_t k = 0; k < t.params.size(); ++k) t.params[k].mutable_grad() = t.slots[k];
      torch::autograd::backward({y}, {grad_output}, /*retain_graph=*/false, /*create_graph=*/false, wrt);
      if (x.defined()) input_gradient = x.grad();
    } else {
      auto computed = torch::autograd::grad({y}, wrt, {grad_output}, /*retain_graph=*/false,
                                            /*create_graph=*/false, /*allow_unused=*/true);
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < t.params.size(); ++k)
        if (computed[k].defined()) t.slots[k].add_(computed[k]);  // widened to fp32; a tied slot sums its users
      if (x.defined()) input_gradient = computed.back();
    }
    for (auto& p : t.params) p.mutable_grad().reset();  // the slots now hold them
  }
  release(index);
  reduce_scatter_async(index, std::move(full));
  trim();
  return input_gradient;
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
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& anchor,
                               int64_t state_address, int64_t index) {
    (void)anchor;  // an input only so that backward runs (fsdp_state.h)
    auto* state = reinterpret_cast<FsdpState*>(static_cast<intptr_t>(state_address));
    const auto u = static_cast<size_t>(index);
    ctx->saved_data["state"] = state_address;
    ctx->saved_data["index"] = index;
    ctx->save_for_backward({input});
    state->gather_shared_for(u);
    state->ensure_gathered(u);
    state->prefetch(u, +1);
    torch::Tensor output;
    {
      report::Tracer::Span span("forward " + state->units[u].name, "compute");
      output = state->units[u].forward(to_compute(input, state->options.mixed_precision.param_dtype));
    }
    if (state->options.reshard_after_forward) state->release(u);
    state->trim();
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* state = state_of(ctx);
    const auto u = static_cast<size_t>(ctx->saved_data["index"].toInt());
    const auto input = ctx->get_saved_variables()[0];
    // A reduce-scatter already done gives its buffer back before the
    // gathers below take theirs from the pool.
    state->finish_reductions(/*wait=*/false);
    state->gather_shared_for(u);
    state->ensure_gathered(u);
    state->prefetch(u, -1);
    report::Tracer::Span span("backward " + state->units[u].name, "compute");
    torch::AutoGradMode enable(true);
    torch::Tensor x = input.detach();
    const bool input_grad = x.is_floating_point() && input.requires_grad();
    if (input_grad) x.requires_grad_(true);
    auto y = state->units[u].forward(to_compute(x, state->options.mixed_precision.param_dtype));
    auto input_gradient = state->differentiate(u, y, grad_outputs[0], input_grad ? x : torch::Tensor());
    // The shard's gradient arrives through finish_reductions(), not autograd.
    return {input_gradient, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor FsdpState::run(size_t index, const torch::Tensor& input) {
  if (std::find(order.begin(), order.end(), index) == order.end()) order.push_back(index);
  if (anchor.device() != input.device())  // on the units' device, as an input of their autograd nodes
    anchor = torch::zeros({0}, torch::TensorOptions().device(input.device())).requires_grad_(true);
  return UnitFunction::apply(input, anchor, static_cast<int64_t>(reinterpret_cast<intptr_t>(this)),
                             static_cast<int64_t>(index));
}

FsdpUnitImpl::FsdpUnitImpl(std::shared_ptr<FsdpState> state, size_t index)
    : state_(std::move(state)), index_(index) {
  register_parameter("flat_param", state_->units[index_].shard);
}

torch::Tensor FsdpUnitImpl::forward(const torch::Tensor& input) { return state_->run(index_, input); }

const std::string& FsdpUnitImpl::name() const { return state_->units[index_].name; }

}  // namespace paratorch
