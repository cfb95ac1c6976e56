// src/parallel/ddp/reducer.cpp — see reducer.h for the state machine.
#include "parallel/ddp/reducer.h"

#include "parallel/gradient_hooks.h"

#include <paratorch/errors.h>

#include <torch/csrc/autograd/variable.h>

#include <map>
#include <sstream>

namespace paratorch {

namespace {

/// A tensor over flat[offset : offset + numel] shaped `sizes` that is *not*
/// an autograd view: Optimizer::zero_grad() in libtorch 1.13 calls detach_()
/// on gradients, which views refuse. The deleter holds `flat`'s storage alive.
torch::Tensor alias_of(const torch::Tensor& flat, int64_t offset, torch::IntArrayRef sizes) {
  auto* data = static_cast<char*>(flat.data_ptr()) + offset * static_cast<int64_t>(flat.element_size());
  return torch::from_blob(data, sizes, [keep = flat](void*) {}, flat.options());
}

}  // namespace

Reducer::Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names, std::shared_ptr<Communicator> comm,
                 DDPOptions options)
    : params_(std::move(params)),
      names_(std::move(names)),
      comm_(std::move(comm)),
      options_(options),
      main_grads_(options.main_grad_dtype.has_value()),
      hook_(comm_hooks::allreduce()),
      divisor_(comm_->size()) {
  layouts_ = plan_buckets(params_, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024), options_.main_grad_dtype);
  slots_.resize(params_.size());
  buckets_.resize(layouts_.size());
  torch::NoGradGuard no_grad;
  const auto cpu_flats = allocate_cpu_buckets();
  for (size_t b = 0; b < layouts_.size(); ++b) {
    const auto& first = params_[layouts_[b].params.front()];
    Bucket& bucket = buckets_[b];
    bucket.flat = first.device().is_cpu() ? cpu_flats[b]
                                          : torch::zeros({layouts_[b].numel},
                                                         first.options().dtype(layouts_[b].dtype).requires_grad(false));
    int64_t offset = 0;
    for (size_t m = 0; m < layouts_[b].params.size(); ++m) {
      size_t i = layouts_[b].params[m];
      const auto& p = params_[i];
      bucket.views.push_back(alias_of(bucket.flat, offset, p.sizes()));
      slots_[i] = Slot{b, m, offset, false, !main_grads_};
      offset += p.numel();
      auto& grad = const_cast<torch::Tensor&>(p).mutable_grad();
      // Main gradients: .grad is the module's own until final, then added
      // into the slot (move_grad_into_bucket); a new accumulation starts at zero.
      if (main_grads_) {
        grad = torch::Tensor();
        continue;
      }
      // Keep what was accumulated so far, then let autograd accumulate into
      // the bucket directly ("gradient as bucket view").
      if (grad.defined()) bucket.views.back().copy_(grad);
      grad = bucket.views.back();
    }
    bucket.pending = bucket.expected = layouts_[b].params.size();
  }
}

GradBucket Reducer::bucket_view(size_t b) const {
  const Bucket& bucket = buckets_[b];
  GradBucket view{b, bucket.flat, divisor_};
  if (mode_ == ReduceMode::kAllReduce && !caller_buckets_) {  // members alias the bucket with their shapes
    view.gradients = bucket.views;
    for (size_t i : layouts_[b].params) view.names.push_back(i < names_.size() ? names_[i] : std::to_string(i));
  }
  return view;
}

int64_t padded_bucket_numel(int64_t numel, int ranks) { return (numel + ranks - 1) / ranks * ranks; }

Reducer::Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names,
                 std::shared_ptr<Communicator> comm, ReduceScatterOptions options)
    : params_(std::move(params)), names_(std::move(names)), comm_(std::move(comm)),
      mode_(ReduceMode::kReduceScatter), scatter_(std::move(options)),
      hook_(comm_hooks::allreduce()),
      divisor_(comm_->size()) {
  // Every parameter belongs to a bucket, and unused ones are reduced as
  // zeros (ZeRO needs the whole shard every step).
  options_.find_unused_parameters = true;
  caller_buckets_ = true;
  if (scatter_.all_reduce) mode_ = ReduceMode::kAllReduce;
  layouts_ = std::move(scatter_.buckets);
  slots_.resize(params_.size());
  buckets_.resize(layouts_.size());
  std::vector<bool> placed(params_.size(), false);
  for (size_t b = 0; b < layouts_.size(); ++b) {
    int64_t offset = 0;
    for (size_t m = 0; m < layouts_[b].params.size(); ++m) {
      const size_t i = layouts_[b].params[m];
      if (i >= params_.size() || placed[i])
        throw UsageError("paratorch: ReduceScatterOptions::buckets names parameter " + std::to_string(i) +
                         " twice or out of range");
      placed[i] = true;
      slots_[i] = Slot{b, m, offset, false, false};
      offset += params_[i].numel();
      buckets_[b].expected += params_[i].requires_grad() ? 1 : 0;
    }
    buckets_[b].pending = buckets_[b].expected;
  }
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].requires_grad() && !placed[i])
      throw UsageError("paratorch: ReduceScatterOptions::buckets misses parameter '" + names_[i] + "'");
  if (!scatter_.buffers.empty() || scatter_.all_reduce) adopt_caller_buffers();
  int64_t widest = 0;
  for (const auto& layout : layouts_) widest = std::max(widest, padded_bucket_numel(layout.numel, comm_->size()));
  if (scatter_.buffers.empty() && !scatter_.all_reduce && scatter_.reduce_slots > 0 && comm_->size() > 1)
    slots_in_comm_ = ReduceSlots(*comm_, scatter_.reduce_slots, widest, scatter_.buffer_dtype);
}

// ReduceScatterOptions::buffers: checked, kept as the buckets for good; a
// member of the buffer's dtype gets .grad as a view of its slot, so autograd
// accumulates in place (what it held so far is kept).
void Reducer::adopt_caller_buffers() {
  const int ranks = scatter_.all_reduce ? 1 : comm_->size();
  if (scatter_.buffers.size() != layouts_.size())
    throw UsageError("paratorch: ReduceScatterOptions::buffers has " + std::to_string(scatter_.buffers.size()) +
                     " tensors for " + std::to_string(layouts_.size()) + " buckets (all_reduce needs them too)");
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < layouts_.size(); ++b) {
    const auto& flat = scatter_.buffers[b];
    const int64_t want = padded_bucket_numel(layouts_[b].numel, ranks);
    if (flat.numel() != want || flat.scalar_type() != scatter_.buffer_dtype || !flat.is_contiguous())
      throw UsageError("paratorch: ReduceScatterOptions::buffers[" + std::to_string(b) + "] must be a contiguous " +
                       std::string(c10::toString(scatter_.buffer_dtype)) + " tensor of " + std::to_string(want) +
                       " elements");
    buckets_[b].flat = flat;
    for (size_t i : layouts_[b].params) {
      auto& p = params_[i];
      if (!p.requires_grad() || p.scalar_type() != flat.scalar_type() || p.device() != flat.device()) continue;
      auto view = alias_of(flat, slots_[i].offset, p.sizes());
      if (p.grad().defined()) view.add_(p.grad());
      const_cast<torch::Tensor&>(p).mutable_grad() = view;
      slots_[i].aliased = true;
      buckets_[b].views.resize(layouts_[b].params.size());
      buckets_[b].views[slots_[i].member] = view;
    }
  }
}

std::vector<torch::Tensor> Reducer::allocate_cpu_buckets() {
  // One buffer per dtype for all CPU buckets, from the communicator, which
  // may place it where its all-reduce needs no staging (a shared-memory
  // window: comm/symmetric_buffer.h); each bucket is a slice of it. One
  // allocation, not one per bucket: each is a collective and a window.
  std::map<torch::ScalarType, int64_t> total;
  for (size_t b = 0; b < layouts_.size(); ++b)
    if (params_[layouts_[b].params.front()].device().is_cpu()) total[layouts_[b].dtype] += layouts_[b].numel;
  std::map<torch::ScalarType, torch::Tensor> whole;
  for (const auto& [dtype, numel] : total) whole[dtype] = comm_->allocate_reduce_buffer(numel, dtype);
  std::map<torch::ScalarType, int64_t> used;
  std::vector<torch::Tensor> flats(layouts_.size());
  for (size_t b = 0; b < layouts_.size(); ++b) {
    if (!params_[layouts_[b].params.front()].device().is_cpu()) continue;
    const auto dtype = layouts_[b].dtype;
    flats[b] = whole[dtype].narrow(0, used[dtype], layouts_[b].numel);
    used[dtype] += layouts_[b].numel;
  }
  return flats;
}

Reducer::~Reducer() {
  // The buckets may live in the communicator's memory, which can die before
  // the model: leave each parameter a gradient of its own.
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& grad = const_cast<torch::Tensor&>(params_[i]).mutable_grad();
    if (slots_[i].aliased && grad.defined() && params_[i].requires_grad()) grad = grad.clone();
  }
}

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
