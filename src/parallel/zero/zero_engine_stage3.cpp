// src/parallel/zero/zero_engine_stage3.cpp — ZeRO stage 3: parameters sharded, gathered per block.
//
// The model runs block by block (BundledModel::blocks). Forward, without
// autograd: gather the block's units (issued one block ahead, so the next
// gather overlaps this block's compute), run it, keep only its input, free
// units the next block does not use. Backward, blocks in reverse: gather
// again, recompute the block with autograd from its saved input (activation
// checkpointing, Chen et al. 2016), backward with the gradient of its output,
// and once the lowest block using a unit is done, reduce-scatter that unit's
// gradient into its owners' shards and free it. A unit used by two blocks
// (gpt's wte, tied to the output head) keeps its gradient until both ran.
// Peak parameter memory: the units of about two blocks, plus the shards.
//
// Resident memory. World keeps freed blocks in glibc's heap (no mmap, no
// automatic trim: WorldOptions::tune_malloc), which suits a step that
// reallocates the same tensors; stage 3's transients do not fit that
// pattern (each block's weight-gradient temporaries and reduce-scatter
// scratch land on different free chunks and stay resident). So stage 3 hands
// freed heap pages back (malloc_trim), when ZeroEngineOptions::
// release_freed_memory asks it to, at the points where they pile up:
// after each block's forward and backward, once the previous block's
// reduce-scatter has finished, and just before autograd accumulates each
// large (>= 1 MiB) gradient, so at most about one weight's temporary is
// resident on top of the live set. Measured (bench/zero, dp=4): peak 577 ->
// 501 MiB; docs/zero.md has the step-time cost. The previous block's
// reduce-scatter is also waited for before this block's gradient buffer is
// taken (it overlaps the recompute forward instead of the whole backward),
// so two block-sized gradient buffers are never live at once.
#include "report/trace.h"
#include "parallel/zero/zero_engine.h"
#include "parallel/zero/zero_unit.h"

#include <algorithm>
#include <set>

namespace paratorch::zero {

// Hooks run when a parameter's gradient of this backward is computed, just
// before AccumulateGrad adds it into the flat buffer view: the previous
// weight's temporary has been freed by then, and its pages go back to the OS.
// (Decided by the full shape from the unit's layout: between blocks the
// parameters themselves are empty.)
void ZeroEngine::release_freed_memory() const {
  if (options_.release_freed_memory) zero::return_free_memory_to_os();
}

void ZeroEngine::install_trim_hooks() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& full = units_[slots_[i].unit]->layout->params()[slots_[i].member];
    if (params_[i].requires_grad() && full.numel() * 4 >= (int64_t{1} << 20))
      params_[i].register_hook([](const torch::Tensor&) { zero::return_free_memory_to_os(); });
  }
}

void ZeroEngine::plan_blocks() {
  blocks_ = model_->blocks();
  // Units are built from blocks_ in order (build_units), so unit b = block b.
  std::map<std::string, size_t> owner;
  for (size_t b = 0; b < blocks_.size(); ++b)
    for (const auto& name : blocks_[b].parameters) owner[name] = b;
  last_user_.assign(blocks_.size(), 0);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    std::set<size_t> needed{b};
    for (const auto& name : blocks_[b].shared) needed.insert(owner.at(name));
    block_units_.emplace_back(needed.begin(), needed.end());
    last_user_[b] = b;
  }
  for (size_t b = 0; b < blocks_.size(); ++b)
    for (size_t u : block_units_[b]) last_user_[u] = std::min(last_user_[u], b);
}

// Starts the all-gather of unit u's parameters (in compute precision).
void ZeroEngine::gather_async(size_t index) {
  Unit& u = *units_[index];
  if (u.gathered.started()) return;
  torch::NoGradGuard no_grad;
  // fp32: all-gather straight from the master shard, which nothing writes
  // until the optimizer step; otherwise from a copy in compute precision.
  if (dtype_ == u.master.scalar_type()) return u.gathered.start(*groups_.dp(), u.master, false, pool_);
  auto src = pool_.take(u.master.numel(), dtype_, device_);
  src.copy_(u.master);
  u.gathered.start(*groups_.dp(), std::move(src), true, pool_);
}

void ZeroEngine::ensure_gathered(size_t index) {
  gather_async(index);
  units_[index]->gathered.finish(pool_);
}

void ZeroEngine::release(size_t index) { units_[index]->gathered.release(pool_); }

// fp32: before a block's backward, each parameter's .grad becomes a view of
// its unit's flat fp32 gradient buffer, so autograd accumulates in place
// (AccumulateGrad adds into a defined .grad) and no second, per-parameter
// copy of the block's gradients exists. A unit shared by two blocks (gpt's
// wte) keeps its buffer until the lower block's backward is done.
void ZeroEngine::attach_gradient_buffers(size_t index) {
  Unit& u = *units_[index];
  if (dtype_ != u.master.scalar_type() || u.full_grad.defined()) return;
  torch::NoGradGuard no_grad;
  u.full_grad = pool_.take(u.layout->padded_numel(), torch::kFloat, device_).zero_();
  auto views = u.layout->views(u.full_grad);
  for (size_t k = 0; k < u.members.size(); ++k)
    if (params_[u.members[k]].requires_grad()) params_[u.members[k]].mutable_grad() = views[k];
}

// The unit's full gradient goes into its fp32 flat buffer (already there in
// fp32; widened from the model precision otherwise) and is reduce-scattered,
// averaged over dp.
void ZeroEngine::reduce_unit_gradients(size_t index) {
  torch::NoGradGuard no_grad;
  Unit& u = *units_[index];
  const bool attached = u.full_grad.defined();
  if (!attached) u.full_grad = pool_.take(u.layout->padded_numel(), torch::kFloat, device_).zero_();
  auto views = u.layout->views(u.full_grad);
  for (size_t k = 0; k < u.members.size(); ++k) {
    auto& p = params_[u.members[k]];
    if (!attached && p.grad().defined()) views[k].copy_(p.grad());
    p.mutable_grad().reset();
  }
  // Through the same comm hook as stages 1-2 ([train] reduce_precision).
  in_flight_.push_back(
      zero::ShardReduction::start(index, std::move(u.full_grad), *u.layout, *groups_.dp(), gradient_hook(), pool_));
}

// Completes reductions: adds the reduced shard into the gradient shard
// (micro-batches accumulate there) and frees the full buffer.
void ZeroEngine::finish_reductions(bool wait_all) {
  std::vector<zero::ShardReduction> still;
  for (auto& r : in_flight_) {
    if (!wait_all && r.work && !r.work->is_completed())
      still.push_back(std::move(r));
    else
      r.finish(&units_[r.unit]->grad, pool_);
  }
  in_flight_ = std::move(still);
}

torch::Tensor ZeroEngine::forward_blocks(const torch::Tensor& input, std::vector<torch::Tensor>* inputs) {
  torch::NoGradGuard no_grad;
  torch::Tensor x = input;
  for (size_t b = 0; b < blocks_.size(); ++b) {
    for (size_t u : block_units_[b]) gather_async(u);
    if (b + 1 < blocks_.size())
      for (size_t u : block_units_[b + 1]) gather_async(u);  // prefetch
    for (size_t u : block_units_[b]) ensure_gathered(u);
    if (inputs) inputs->push_back(x);
    {
      report::Tracer::Span span("forward " + blocks_[b].name, "compute");
      x = blocks_[b].forward(x);
    }
    const bool last = b + 1 == blocks_.size();
    for (size_t u : block_units_[b]) {
      const bool next_needs = !last && std::count(block_units_[b + 1].begin(), block_units_[b + 1].end(), u);
      // The last block's units stay for backward, which starts there.
      if (!next_needs && !(last && inputs)) release(u);
    }
    release_freed_memory();
  }
  return x;
}

double ZeroEngine::forward_backward_blocks(const models::Batch& batch, int microbatches) {
  std::vector<torch::Tensor> inputs;
  forward_blocks(batch.input, &inputs);
  const double scale = options_.loss_scaling ? scaler_.scale() : 1.0;
  double loss_value = 0;
  torch::Tensor grad_out;
  for (size_t b = blocks_.size(); b-- > 0;) {
    for (size_t u : block_units_[b]) gather_async(u);
    if (b > 0)
      for (size_t u : block_units_[b - 1]) gather_async(u);  // prefetch
    for (size_t u : block_units_[b]) ensure_gathered(u);
    auto x = inputs[b].detach();
    if (x.is_floating_point()) x.requires_grad_(true);
    {
      report::Tracer::Span span("backward " + blocks_[b].name, "compute");
      auto y = blocks_[b].forward(x);  // recompute, with autograd
      // The previous block's reduce-scatter overlapped the recompute; its
      // full gradient buffer is now free for this block's (from the pool).
      finish_reductions(true);
      release_freed_memory();
      for (size_t u : block_units_[b]) attach_gradient_buffers(u);
      if (b + 1 == blocks_.size()) {
        auto loss = fp32_loss(y, batch) / microbatches;
        loss_value = loss.item<double>();
        (loss * scale).backward();
      } else {
        y.backward(grad_out);
      }
    }
    grad_out = x.requires_grad() ? x.grad() : torch::Tensor();
    inputs[b] = torch::Tensor();
    for (size_t u : block_units_[b]) {
      if (last_user_[u] == b) reduce_unit_gradients(u);
      const bool previous_needs = b > 0 && std::count(block_units_[b - 1].begin(), block_units_[b - 1].end(), u);
      if (!previous_needs) release(u);
    }
    finish_reductions(false);
    release_freed_memory();
  }
  finish_reductions(true);
  release_freed_memory();
  return loss_value;
}

}  // namespace paratorch::zero
