// src/parallel/ddp/reducer_buckets.cpp — the reducer's buckets (reducer.h):
// planned over the parameters, with .grad a view of each slot (or the main
// gradients' slots), in the communicator's reduce buffer on CPU; or the
// caller's own flat buffers (reduce-scatter mode, ZeRO); and handed back to
// the parameters when the reducer goes.
#include "parallel/ddp/reducer.h"

#include <paratorch/errors.h>

#include <map>

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

}  // namespace paratorch
