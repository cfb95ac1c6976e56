// src/parallel/ddp/reducer.cpp — see reducer.h for the state machine; the
// buckets themselves are built in reducer_buckets.cpp.
#include "parallel/ddp/reducer.h"

#include "parallel/gradient_hooks.h"

#include <paratorch/errors.h>

#include <torch/csrc/autograd/variable.h>

#include <sstream>

namespace paratorch {

void Reducer::install_hooks() {
  std::weak_ptr<Reducer> weak = shared_from_this();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].requires_grad()) continue;
    accumulators_.push_back(paratorch::on_gradient_ready(params_[i], [weak, i] {
      if (auto self = weak.lock()) self->on_gradient_ready(i);
    }));
  }
}

void Reducer::set_sync(bool enabled) {
  std::lock_guard<std::mutex> lock(mutex_);
  sync_enabled_ = enabled;
}

void Reducer::point_grad_at_bucket(size_t i) {
  // The user may have replaced .grad (libtorch 2.x's zero_grad sets it to
  // None): move its value into the bucket and restore the view.
  const Slot& s = slots_[i];
  const torch::Tensor& view = buckets_[s.bucket].views[s.member];
  auto& grad = const_cast<torch::Tensor&>(params_[i]).mutable_grad();
  if (grad.defined() && grad.data_ptr() == view.data_ptr()) return;
  torch::NoGradGuard no_grad;
  if (grad.defined()) view.copy_(grad);
  else view.zero_();
  grad = view;
}

// Reduce-scatter mode: bucket b's padded buffer for this pass, zeroed (so
// padding and parameters without a gradient add nothing).
torch::Tensor& Reducer::scatter_buffer(size_t b) {
  Bucket& bucket = buckets_[b];
  if (!bucket.flat.defined()) {
    const auto device = params_[layouts_[b].params.front()].device();
    bucket.flat = pool_.take(padded_bucket_numel(layouts_[b].numel, comm_->size()), scatter_.buffer_dtype, device)
                      .zero_();
  }
  return bucket.flat;
}

// Reduce-scatter mode: the gradient joins its bucket and leaves .grad, so
// only the buckets of this pass hold full gradients. Added, not copied: the
// caller's buckets accumulate over passes (a pooled one starts at zero).
void Reducer::move_grad_into_bucket(size_t i) {
  auto& grad = const_cast<torch::Tensor&>(params_[i]).mutable_grad();
  if (!grad.defined()) return;
  torch::NoGradGuard no_grad;
  const Slot& s = slots_[i];
  scatter_buffer(s.bucket).narrow(0, s.offset, grad.numel()).add_(grad.reshape({-1}));
  grad.reset();
}

void Reducer::take_gradient(size_t i) {
  if (slots_[i].aliased) point_grad_at_bucket(i);
  else move_grad_into_bucket(i);
}

void Reducer::set_comm_hook(CommHook hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != Phase::kIdle)
    throw UsageError("paratorch DDP: register_comm_hook() during a backward pass; register it before the first");
  hook_ = std::move(hook);
}

void Reducer::begin_backward() {
  phase_ = Phase::kBackward;
  ++passes_;
  // The join flags go before any bucket, so every rank agrees on the order.
  divisor_ = join_enabled_ ? active_ranks(true) : comm_->size();
  // Finalize when the engine finishes this backward pass, so backward()
  // returns with averaged gradients, as in PyTorch.
  if (!finalize_at_end_) return;
  std::weak_ptr<Reducer> weak = shared_from_this();
  at_end_of_backward([weak] {
    if (auto self = weak.lock()) self->finalize();
  });
}

// Main gradients: the first gradient after a reduced pass starts a new
// accumulation, so the slots are zeroed before anything is added to them.
void Reducer::start_accumulation() {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) b.flat.zero_();
  accumulation_started_ = true;
}

void Reducer::restart_accumulation() {
  std::lock_guard<std::mutex> lock(mutex_);
  accumulation_started_ = false;
}

std::vector<torch::Tensor> Reducer::main_grads() const {
  if (!main_grads_)
    throw UsageError(
        "paratorch DDP: main_grads() needs DDPOptions::main_grad_dtype (e.g. torch::kFloat) at construction");
  std::vector<torch::Tensor> out(params_.size());
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].requires_grad()) out[i] = buckets_[slots_[i].bucket].views[slots_[i].member];
  return out;
}

void Reducer::on_gradient_ready(size_t i) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (main_grads_ && !accumulation_started_) start_accumulation();
  if (!sync_enabled_) {  // no_sync(): accumulate locally only (in the kept buckets, if any)
    unreduced_ = true;
    if ((main_grads_ || !scatter_.buffers.empty()) && !slots_[i].aliased) move_grad_into_bucket(i);
    return;
  }
  if (phase_ == Phase::kIdle) begin_backward();
  Slot& slot = slots_[i];
  if (slot.ready)
    throw UsageError("paratorch DDP: parameter '" + names_[i] +
                     "' received a second gradient in one backward pass; DDP reduces each "
                     "gradient once per backward (reuse inside one graph is fine, a second "
                     "backward before the first finished is not)");
  take_gradient(i);
  slot.ready = true;
  --buckets_[slot.bucket].pending;
  launch_in_order();
}

void Reducer::launch_in_order() {
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].pending == 0) {
    const size_t b = next_to_launch_++;
    Bucket& bucket = buckets_[b];
    GradBucket view = bucket_view(b);
    if (mode_ == ReduceMode::kReduceScatter) {
      view.buffer = scatter_buffer(b);
      const int64_t n = view.buffer.numel() / comm_->size();
      if (const size_t k = slots_in_comm_.count(); k > 0) {
        retire_reduced(b >= k ? b - k + 1 : 0);  // its slot's previous bucket hands over first
        view.buffer = slots_in_comm_.place(b, view.buffer);
        pool_.give(std::move(bucket.flat));
        bucket.flat = view.buffer;
        bucket.in_slot = true;
      }
      bucket.shard = scatter_.buffers.empty() && !bucket.in_slot
                         ? pool_.take(n, scatter_.buffer_dtype, view.buffer.device())
                         : view.buffer.narrow(0, comm_->rank() * n, n);  // in place
      view.shard = bucket.shard;
    }
    bucket.work = hook_(*comm_, view);
    bucket.state = BucketState::kLaunched;
    ++launched_total_;
  }
  if (mode_ == ReduceMode::kReduceScatter) retire_reduced(0);
}

void Reducer::finalize() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != Phase::kBackward) return;
  std::vector<size_t> unused;
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].requires_grad() && !slots_[i].ready) unused.push_back(i);
  if (!unused.empty() && !options_.find_unused_parameters) {
    std::ostringstream msg;
    msg << "paratorch DDP: " << unused.size()
        << " parameter(s) received no gradient in this backward pass: ";
    for (size_t k = 0; k < unused.size() && k < 10; ++k) msg << (k ? ", " : "") << names_[unused[k]];
    if (unused.size() > 10) msg << ", ...";
    msg << ". Their buckets cannot be reduced. Set DDPOptions::find_unused_parameters = true "
           "(reduces their current gradient), or exclude them from the module.";
    // Drain what was launched so no collective is left half-issued.
    for (auto& b : buckets_)
      if (b.state == BucketState::kLaunched) b.work->wait();
    reset_for_next_pass();
    throw UsageError(msg.str());
  }
  for (size_t i : unused) {
    take_gradient(i);
    slots_[i].ready = true;
    --buckets_[slots_[i].bucket].pending;
  }
  launch_in_order();
  if (mode_ == ReduceMode::kReduceScatter) retire_reduced(next_to_launch_);
  for (auto& b : buckets_) {
    if (b.work) b.work->wait();
    b.state = BucketState::kReduced;
  }
  accumulation_started_ = false;  // main gradients: the next gradient starts a new sum
  unreduced_ = false;
  reset_for_next_pass();
}

void Reducer::reduce_accumulated() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!unreduced_ || phase_ != Phase::kIdle) return;
    // A pass with no hook: finalize takes every parameter as unused, i.e.
    // reduces the gradient each holds (find_unused_parameters' rule).
    phase_ = Phase::kBackward;
    ++passes_;
    divisor_ = join_enabled_ ? active_ranks(true) : comm_->size();
  }
  const bool find_unused = options_.find_unused_parameters;
  options_.find_unused_parameters = true;
  try {
    finalize();
  } catch (...) {
    options_.find_unused_parameters = find_unused;
    throw;
  }
  options_.find_unused_parameters = find_unused;
}

// Reduce-scatter mode: in launch order, each finished bucket hands its
// averaged shard to the owner and its buffers back to the pool, so the next
// bucket (or pass) reuses the memory: ZeRO's constant-size buffers (§5.3).
void Reducer::retire_reduced(size_t wait_below) {
  while (next_to_retire_ < next_to_launch_ && buckets_[next_to_retire_].work) {
    Bucket& bucket = buckets_[next_to_retire_];
    if (next_to_retire_ >= wait_below && !bucket.work->is_completed()) return;
    bucket.work->wait();
    bucket.work.reset();
    bucket.state = BucketState::kReduced;
    if (scatter_.on_shard) scatter_.on_shard(next_to_retire_, bucket.shard);
    if (scatter_.buffers.empty() && !bucket.in_slot) {
      pool_.give(std::move(bucket.shard));
      pool_.give(std::move(bucket.flat));
    }
    if (scatter_.buffers.empty()) bucket.flat = torch::Tensor();
    bucket.in_slot = false;
    bucket.shard = torch::Tensor();
    ++next_to_retire_;
  }
}

void Reducer::reset_for_next_pass() {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b].pending = buckets_[b].expected;
    buckets_[b].state = BucketState::kFilling;
    buckets_[b].work.reset();
  }
  for (auto& s : slots_) s.ready = false;
  next_to_launch_ = next_to_retire_ = 0;
  phase_ = Phase::kIdle;
}

}  // namespace paratorch
