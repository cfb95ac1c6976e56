// src/train/zero_engine_reduce.cpp — ZeroEngine's gradient path (see
// zero_engine.h). Stage 2 is DDP's gradient reducer in its reduce-scatter
// mode over the units (install_reducer). Stages 0-1: a hook per parameter
// moves each final gradient into its unit's fp32 buffer; a unit whose
// gradients are all in launches its dp reduction (stage 0 all-reduce, stage 1
// reduce-scatter in place; optionally in 16 bits), strictly in unit order;
// finish_reductions completes them. Stage 3 reduce-scatters into a shard per
// block, launched from zero_engine_stage3.cpp.
#include "train/zero_engine.h"

#include "train/zero_unit.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

namespace paratorch::train {

// Stage 2: the units are the reducer's buckets, so its shards are the
// masters' slices; each micro-batch's averaged shard is added into u->grad.
// [train] reduce_precision is the comm hook's (16 bits on the wire).
void ZeroEngine::install_reducer() {
  ReduceScatterOptions scatter;
  for (const auto& u : units_) scatter.buckets.push_back(BucketLayout{u->members, u->layout->numel(), dtype_});
  scatter.buffer_dtype = torch::kFloat;
  scatter.on_shard = [this](size_t u, const torch::Tensor& shard) {
    torch::NoGradGuard no_grad;
    units_[u]->grad.add_(shard);
  };
  reducer_ = std::make_shared<Reducer>(params_, names_, groups_.dp(), std::move(scatter));
  const bool one_rank = groups_.dp()->size() == 1;  // nothing to reduce: no rounding either
  if (reduce_dtype_ == torch::kBFloat16 && !one_rank) reducer_->set_comm_hook(comm_hooks::bf16_compress());
  if (reduce_dtype_ == torch::kHalf && !one_rank) reducer_->set_comm_hook(comm_hooks::fp16_compress());
  reducer_->install_hooks();
}

// Stages 0-1: a post-hook on each parameter's gradient accumulator (as DDP's Reducer):
// it runs once the parameter's gradient of this backward is final.
void ZeroEngine::install_hooks() {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient_ready(i);
          return outputs;
        }));
    accumulators_.push_back(std::move(accumulator));
  }
}

// Moves the gradient into the unit's fp32 buffer (widening bf16/fp16) and
// drops the model's copy, so at most the buckets in flight hold full gradients.
void ZeroEngine::on_gradient_ready(size_t i) {
  torch::NoGradGuard no_grad;
  Unit& u = *units_[slots_[i].unit];
  auto& p = params_[i];
  const size_t member = slots_[i].member;
  const bool in_buffer = !u.grad_views.empty() && p.grad().defined() &&
                         p.grad().data_ptr() == u.grad_views[member].data_ptr();
  if (p.grad().defined() && !in_buffer) {
    if (!u.full_grad.defined()) u.full_grad = pool_.take(u.layout->padded_numel(), torch::kFloat, device_).zero_();
    const auto& L = *u.layout;
    u.full_grad.narrow(0, L.offset(member), p.numel()).add_(p.grad().reshape({-1}));
    if (u.grad_views.empty()) p.mutable_grad().reset();
    else p.mutable_grad() = u.grad_views[member];
  }
  if (u.pending > 0 && --u.pending == 0 && reducing_) launch_in_order(false);
}

void ZeroEngine::begin_backward(bool reduce) {
  reducing_ = reduce;
  next_launch_ = 0;
  for (auto& u : units_) {
    u->pending = 0;
    for (size_t k : u->members) u->pending += params_[k].requires_grad() ? 1 : 0;
  }
}

// Units launch strictly in index order so every rank issues the same
// sequence of collectives, whatever order gradients arrive in.
void ZeroEngine::launch_in_order(bool force) {
  while (next_launch_ < units_.size() && (force || units_[next_launch_]->pending == 0)) launch(next_launch_++);
  finish_reductions(false);
}

void ZeroEngine::launch(size_t index) {
  Unit& u = *units_[index];
  const auto dp = groups_.dp();
  if (!u.full_grad.defined()) u.full_grad = pool_.take(u.layout->padded_numel(), torch::kFloat, device_).zero_();
  if (reduce_dtype_ != torch::kFloat && dp->size() > 1) return launch_low_precision(index);
  if (options_.stage <= 1) {
    // Stage 1: each rank updates only its shard, so reduce just that (in
    // place, into u.grad, this rank's chunk of full_grad). Stage 0: all of it.
    if (dp->size() > 1 && options_.stage == 1) u.work = dp->reduce_scatter_async(u.grad, u.full_grad, ReduceOp::kAvg);
    else if (dp->size() > 1) u.work = dp->all_reduce_async(u.full_grad, ReduceOp::kAvg);
  } else {  // stage 3 (stage 2 is the reducer's)
    u.reduced = pool_.take(u.layout->shard_numel(), torch::kFloat, device_);
    if (dp->size() > 1) u.work = dp->reduce_scatter_async(u.reduced, u.full_grad, ReduceOp::kAvg);
    else u.reduced.copy_(u.full_grad);
  }
  in_flight_.push_back(index);
}

// [train] reduce_precision = bf16 | fp16: the unit's gradient is rounded to
// 16 bits and reduced as such (stage 0 all-reduces it, stages 1 and 3
// reduce-scatter it; stage 2 is the reducer's bf16/fp16 comm hook); finish_reductions widens the result back. PyTorch over
// NCCL moves 16-bit words; MPI has no 16-bit float sum, so the communicator widens
// internally: the numerics are a 16-bit reduction's, the bytes on the wire
// are fp32's (docs/zero.md).
void ZeroEngine::launch_low_precision(size_t index) {
  Unit& u = *units_[index];
  const auto dp = groups_.dp();
  u.low_grad = u.full_grad.to(reduce_dtype_);
  if (options_.stage == 0) {
    u.work = dp->all_reduce_async(u.low_grad, ReduceOp::kAvg);
  } else {
    u.low_shard = torch::empty({u.layout->shard_numel()}, u.low_grad.options());
    u.work = dp->reduce_scatter_async(u.low_shard, u.low_grad, ReduceOp::kAvg);
  }
  if (options_.stage == 3) u.reduced = pool_.take(u.layout->shard_numel(), torch::kFloat, device_);
  in_flight_.push_back(index);
}

// Widens a finished 16-bit reduction into the unit's fp32 gradient.
void ZeroEngine::widen_low_precision(Unit& u) {
  if (options_.stage == 0) u.full_grad.copy_(u.low_grad);
  else if (options_.stage == 1) u.grad.copy_(u.low_shard);
  else u.reduced.copy_(u.low_shard);
  u.low_grad = u.low_shard = torch::Tensor();
}

// Completes reductions: stage 3 adds the reduced shard into the gradient
// shard (micro-batches accumulate there) and frees the full buffer.
void ZeroEngine::finish_reductions(bool wait_all) {
  torch::NoGradGuard no_grad;
  std::vector<size_t> still;
  for (size_t index : in_flight_) {
    Unit& u = *units_[index];
    if (u.work && !wait_all && !u.work->is_completed()) {
      still.push_back(index);
      continue;
    }
    if (u.work) u.work->wait();
    u.work.reset();
    if (u.low_grad.defined()) widen_low_precision(u);
    if (options_.stage == 3) {
      u.grad.add_(u.reduced);
      // Freed, not pooled, so that the trim before the next block's
      // backward returns it (stage3.cpp).
      u.reduced = torch::Tensor();
      pool_.give(std::move(u.full_grad));
    }
  }
  in_flight_ = std::move(still);
}

}  // namespace paratorch::train
