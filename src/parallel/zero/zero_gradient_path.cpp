// src/parallel/zero/zero_gradient_path.cpp — ZeroRedundancyOptimizer's
// gradients: from the module's .grad to the averaged fp32 gradient shard
// the user's optimizer reads.
//
// Stage 1 is DDP's gradient reducer over the caller's buffers: each flat
// buffer's fp32 full_grad is a bucket (the module's fp32 .grad aliases it),
// all-reduced in place on the communication thread while backward goes on,
// averaged over dp, so each .grad holds the average, as after DDP, and the
// shard's .grad is this rank's slice of it. Under DDP (reduce_gradients =
// false) or on a group of one, step() only copies the gradients in.
// Stage 2 (Rajbhandari et al., 2019, §5.2) is DDP's gradient reducer in its
// reduce-scatter mode (parallel/ddp/reducer.h): each buffer's gradients move
// into a pooled full buffer as they become final, a full buffer is
// reduce-scattered on the communication thread while backward goes on
// (strictly in buffer order), and when backward ends each rank adds its
// averaged shard into the shard's .grad (so several backwards accumulate):
// between steps a rank holds only gradient shards.
#include "parallel/zero/zero_redundancy_impl.h"

#include "parallel/grad_clip.h"

#include <set>

namespace paratorch {

void ZeroRedundancyOptimizer::Impl::reduce_stage1() {
  torch::NoGradGuard no_grad;
  if (reducer)
    reducer->finalize();  // normally done when backward returned; a no-op then
  else
    copy_stage1_gradients();
  for (auto& b : buffers)
    b.shard.mutable_grad() = b.full_grad.narrow(0, b.layout->shard_begin(), b.layout->shard_numel())
                                 .to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
}

// Without the reducer: each .grad into its slot of full_grad (under DDP,
// .grad is DDP's bucket view and already holds the average).
void ZeroRedundancyOptimizer::Impl::copy_stage1_gradients() {
  const auto reduce_dtype = options.mixed_precision.reduce_dtype;
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
  }
}

// The buffers are the reducer's buckets, so its shards are the masters'
// slices; the gradients are collected in fp32 and reduce_dtype is the comm
// hook's (16 bits on the wire, as DDP's compression hooks).
void ZeroRedundancyOptimizer::Impl::install_reducer() {
  ReduceScatterOptions scatter;
  for (const auto& b : buffers)
    scatter.buckets.push_back(BucketLayout{b.members, b.layout->numel(), b.flat.scalar_type()});
  scatter.buffer_dtype = torch::kFloat;
  if (options.stage == 1) {  // the whole gradient, kept: the caller's buffers, all-reduced in place
    scatter.all_reduce = true;
    for (auto& b : buffers) {
      b.full_grad = torch::zeros({b.layout->padded_numel()}, b.flat.options().dtype(torch::kFloat));
      if (b.flat.scalar_type() == torch::kFloat) b.grad_views = b.layout->views(b.full_grad);  // .grad aliases
      scatter.buffers.push_back(b.full_grad.narrow(0, 0, b.layout->numel()));                  // the padding stays zero
    }
  } else {
    scatter.on_shard = [this](size_t b, const torch::Tensor& shard) { add_reduced_shard(b, shard); };
    scatter.reduce_slots = kReduceSlots * (!buffers.empty() && buffers.front().flat.device().is_cpu());
  }
  reducer = std::make_shared<Reducer>(params, names, group, std::move(scatter));
  reducer->set_comm_hook(reduce_in_dtype(options.mixed_precision.reduce_dtype, *group));
  reducer->install_hooks();
}

// Several backwards before a step accumulate in the shard's gradient.
void ZeroRedundancyOptimizer::Impl::add_reduced_shard(size_t b, const torch::Tensor& shard) {
  torch::NoGradGuard no_grad;
  auto& grad = buffers[b].shard.mutable_grad();
  if (!grad.defined()) grad = torch::zeros_like(buffers[b].shard);
  grad.add_(shard);
}

// The shards are disjoint pieces over dp (padding's gradient is zero). With
// tp or tied copies, each parameter's piece of the shard carries its split
// and whether another stage counts it (grad_norm.h's rules).
void ZeroRedundancyOptimizer::Impl::clip_gradients() {
  const bool tp = options.clip_tp_group && options.clip_tp_group->size() > 1;
  const std::set<std::string> copies(options.clip_tied_copies.begin(), options.clip_tied_copies.end());
  std::vector<parallel::NormEntry> entries;
  for (const auto& b : buffers) {
    if ((!tp && copies.empty()) || !b.shard.grad().defined()) {
      entries.push_back({b.shard.grad(), {}, false});
      continue;
    }
    for (const auto& piece : b.layout->pieces()) {
      const std::string& name = names[b.members[piece.param]];
      entries.push_back({b.shard.grad().narrow(0, piece.shard_offset, piece.length),
                         tp ? options.clip_tp_specs.at(name) : tensor_parallel::ShardSpec{}, copies.count(name) > 0});
    }
  }
  last_grad_norm = parallel::clip_norm_entries(
      entries, options.max_grad_norm,
      {group.get(), tp ? options.clip_tp_group.get() : nullptr, options.clip_pp_group.get()});
}

}  // namespace paratorch
