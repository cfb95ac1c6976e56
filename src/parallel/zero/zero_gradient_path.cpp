// src/parallel/zero/zero_gradient_path.cpp — ZeroRedundancyOptimizer's
// gradients: from the module's .grad to the averaged fp32 gradient shard
// the user's optimizer reads.
//
// Stage 1: step() moves every gradient into its flat buffer (the module's
// .grad aliases it afterwards, so later backwards accumulate there in place)
// and all-reduces the buffers, averaged over dp: each .grad then holds the
// average, as after DDP, and the shard's .grad is this rank's slice of it.
// Stage 2 (Rajbhandari et al., 2019, §5.2): a hook on each parameter's
// gradient accumulator (gradient_hooks.h, as DDP's reducer) copies the
// gradient into its buffer and drops it; a buffer whose gradients are all in
// is reduce-scattered on the communication thread while backward goes on
// (strictly in buffer order, so every rank issues the same collectives).
// When backward ends each rank adds its reduced shard into the shard's .grad
// (so several backwards accumulate) and the full buffers go back to a pool:
// between steps a rank holds only gradient shards.
#include "parallel/zero/zero_redundancy_impl.h"

#include "parallel/gradient_hooks.h"

namespace paratorch {

void ZeroRedundancyOptimizer::Impl::reduce_stage1() {
  torch::NoGradGuard no_grad;
  const auto reduce_dtype = options.mixed_precision.reduce_dtype;
  std::vector<WorkHandle> works;
  for (auto& b : buffers) {
    if (!b.full_grad.defined()) {
      b.full_grad = torch::zeros({b.layout->padded_numel()}, b.flat.options().dtype(reduce_dtype));
      // Under DDP (reduce_gradients = false) .grad stays DDP's bucket view.
      if (reduce_dtype == b.flat.scalar_type() && options.reduce_gradients)
        b.grad_views = b.layout->views(b.full_grad);
    }
    const auto views = b.layout->views(b.full_grad);
    for (size_t k = 0; k < b.members.size(); ++k) {
      auto& grad = params[b.members[k]].mutable_grad();
      const bool aliased = !b.grad_views.empty() && grad.defined() && grad.data_ptr() == b.grad_views[k].data_ptr();
      if (aliased) continue;
      if (grad.defined()) views[k].copy_(grad);
      else views[k].zero_();  // no gradient this step (unused parameter)
      if (!b.grad_views.empty()) grad = b.grad_views[k];
    }
    if (options.reduce_gradients && group->size() > 1)
      works.push_back(group->all_reduce_async(b.full_grad, ReduceOp::kAvg));
  }
  for (auto& w : works) w->wait();
  for (auto& b : buffers)
    b.shard.mutable_grad() = b.full_grad.narrow(0, b.layout->shard_begin(), b.layout->shard_numel())
                                 .to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
}

void ZeroRedundancyOptimizer::Impl::install_hooks() {
  for (auto& b : buffers) b.pending = b.members.size();
  for (size_t i = 0; i < params.size(); ++i)
    accumulators.push_back(paratorch::on_gradient_ready(params[i], [this, i] { on_gradient_ready(i); }));
}

void ZeroRedundancyOptimizer::Impl::on_gradient_ready(size_t i) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!in_backward) {
    in_backward = true;
    // Backward returns with the shards reduced, as DDP's with averaged .grad.
    at_end_of_backward([this] { end_backward(); });
  }
  move_gradient_into_buffer(i);
  --buffers[slot[i].first].pending;
  launch_in_order(false);
}

void ZeroRedundancyOptimizer::Impl::move_gradient_into_buffer(size_t i) {
  torch::NoGradGuard no_grad;
  auto& grad = params[i].mutable_grad();
  if (!grad.defined()) return;
  auto& b = buffers[slot[i].first];
  if (!b.full_grad.defined())
    b.full_grad =
        pool.take(b.layout->padded_numel(), options.mixed_precision.reduce_dtype, b.flat.device()).zero_();
  const auto& layout = *b.layout;
  const size_t member = slot[i].second;
  b.full_grad.narrow(0, layout.offset(member), grad.numel()).copy_(grad.reshape({-1}));
  grad.reset();
}

void ZeroRedundancyOptimizer::Impl::launch_in_order(bool force) {
  while (next_launch < buffers.size() && (force || buffers[next_launch].pending == 0)) {
    auto& b = buffers[next_launch++];
    const auto dtype = options.mixed_precision.reduce_dtype;
    if (!b.full_grad.defined()) b.full_grad = pool.take(b.layout->padded_numel(), dtype, b.flat.device()).zero_();
    b.reduced = pool.take(b.layout->shard_numel(), dtype, b.flat.device());
    if (group->size() > 1) b.work = group->reduce_scatter_async(b.reduced, b.full_grad, ReduceOp::kAvg);
    else b.reduced.copy_(b.full_grad);
  }
}

void ZeroRedundancyOptimizer::Impl::end_backward() {
  std::lock_guard<std::mutex> lock(mutex);
  if (!in_backward) return;
  torch::NoGradGuard no_grad;
  launch_in_order(true);  // buffers with a parameter that got no gradient
  for (auto& b : buffers) {
    if (b.work) b.work->wait();
    b.work.reset();
    if (!b.shard.grad().defined()) b.shard.mutable_grad() = torch::zeros_like(b.shard);
    b.shard.mutable_grad().add_(b.reduced);
    pool.give(std::move(b.reduced));
    pool.give(std::move(b.full_grad));
    b.pending = b.members.size();
  }
  next_launch = 0;
  in_backward = false;
}

}  // namespace paratorch
