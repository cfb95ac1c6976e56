// src/parallel/zero/flat_shards.cpp — see flat_shards.h.
#include "parallel/zero/flat_shards.h"

#include "parallel/ddp/reduce_slots.h"
#include <paratorch/ddp.h>
#include <paratorch/errors.h>

namespace paratorch::zero {

FlatShards::FlatShards(std::vector<torch::Tensor> params, std::vector<std::string> names,
                       std::shared_ptr<Communicator> group, FlatShardsOptions options)
    : params_(std::move(params)), names_(std::move(names)), group_(std::move(group)), options_(options) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i)  // the bucket plan leaves frozen tensors out
    if (!params_[i].requires_grad())
      throw UsageError("paratorch: ZeRO's parameter '" + names_[i] +
                       "' does not require grad; pass trainable ones only");
  // Buffers are counted in fp32 gradient bytes whatever the compute dtype:
  // they are the reducer's buckets, which collect fp32 gradients.
  const auto plan = plan_buckets(params_, static_cast<int64_t>(options_.bucket_mb * 1024 * 1024), torch::kFloat);
  Arenas arenas = allocate_arenas(plan);
  for (const auto& bucket : plan) build_buffer(bucket.params, arenas);
  if (shared_) group_->barrier();  // every shard written before any forward reads it
  if (options_.reduce_gradients) install_reducer();
}

FlatShards::~FlatShards() {
  torch::NoGradGuard no_grad;
  for (const auto& b : buffers_) {
    for (size_t k = 0; k < b.members.size(); ++k) {
      auto& p = params_[b.members[k]];
      if (in_full_grad(b, k)) p.mutable_grad().reset();
      if (shared_) p.set_data(p.detach().clone());
    }
  }
}

// Whether member k's .grad is the reducer's view of the whole-gradient
// buffer: it starts where the layout puts member k.
bool FlatShards::in_full_grad(const Buffer& b, size_t k) const {
  const auto& grad = params_[b.members[k]].grad();
  if (!grad.defined() || !b.full_grad.defined()) return false;
  const auto* slot = static_cast<const float*>(b.full_grad.data_ptr()) + b.layout->offset(k);
  return grad.data_ptr() == slot;
}

// Stage 1's whole gradients: one buffer from the dp communicator, which on
// one node is a symmetric shared-memory window reduced in place
// (comm/symmetric_buffer.h). With one copy per node the parameters are one
// buffer every rank maps.
FlatShards::Arenas FlatShards::allocate_arenas(const std::vector<BucketLayout>& plan) {
  Arenas arenas;
  const int ranks = group_->size();
  int64_t total = 0;
  for (const auto& bucket : plan) total += padded_bucket_numel(bucket.numel, ranks);
  if (plan.empty()) return arenas;
  const auto device = params_[plan.front().params.front()].device();
  if (options_.stage == 1 && options_.reduce_gradients)
    arenas.grads = group_->allocate_reduce_buffer(total, torch::kFloat).to(device);
  if (options_.one_copy_per_node && ranks > 1 && device.is_cpu())
    arenas.params = group_->allocate_shared_buffer(total, options_.param_dtype);
  shared_ = arenas.params.defined();
  return arenas;
}

// The members' values go into an fp32 buffer; this rank's slice of it is
// the master (a view of the parameters themselves when they are fp32), and
// the parameters become views of the buffer in param_dtype.
void FlatShards::build_buffer(const std::vector<size_t>& members, Arenas& arenas) {
  Buffer b;
  b.members = members;
  std::vector<FlatParam> flat;
  for (size_t i : members) flat.push_back({names_[i], params_[i].sizes().vec(), params_[i].dim() >= 2});
  b.layout = std::make_shared<FlatLayout>(std::move(flat), group_->size(), group_->rank());
  const FlatLayout& L = *b.layout;
  const bool fp32 = options_.param_dtype == torch::kFloat;
  // fp32 in one node copy: rank 0 initializes it in place, the barrier after the last buffer publishes it.
  const bool into_shared = arenas.params.defined() && fp32;
  auto full = into_shared ? arenas.params.narrow(0, arenas.used, L.padded_numel())
                          : torch::zeros({L.padded_numel()}, params_[members[0]].options().dtype(torch::kFloat));
  const auto views = L.views(full);
  if (!into_shared || group_->rank() == 0)
    for (size_t k = 0; k < members.size(); ++k) views[k].copy_(params_[members[k]]);
  const auto shard = full.narrow(0, L.shard_begin(), L.shard_numel());
  if (into_shared) {
    b.flat = full;
  } else if (arenas.params.defined()) {  // 16 bits in one node copy: each rank writes its own shard
    b.flat = arenas.params.narrow(0, arenas.used, L.padded_numel());
    b.flat.narrow(0, L.shard_begin(), L.shard_numel()).copy_(shard);
  } else {
    b.flat = fp32 ? full : full.to(options_.param_dtype);
  }
  b.master = fp32 ? b.flat.narrow(0, L.shard_begin(), L.shard_numel()) : shard.clone();
  const auto param_views = L.views(b.flat);
  for (size_t k = 0; k < members.size(); ++k) params_[members[k]].set_data(param_views[k]);
  if (arenas.grads.defined()) {
    b.full_grad = arenas.grads.narrow(0, arenas.used, L.padded_numel());
    b.grad = b.full_grad.narrow(0, L.shard_begin(), L.shard_numel());
  } else {
    b.grad = torch::zeros({L.shard_numel()}, b.master.options());
  }
  b.master.mutable_grad() = b.grad;
  arenas.used += L.padded_numel();
  buffers_.push_back(std::move(b));
}

// The buffers are the reducer's buckets, so its shards are the masters'
// slices; gradients are collected in fp32 and reduce_dtype is the comm
// hook's (16 bits on the wire, as DDP's compression hooks).
void FlatShards::install_reducer() {
  ReduceScatterOptions scatter;
  for (const auto& b : buffers_)
    scatter.buckets.push_back(BucketLayout{b.members, b.layout->numel(), b.flat.scalar_type()});
  scatter.buffer_dtype = torch::kFloat;
  if (options_.stage == 1) {  // the kept whole gradients, reduced in place
    scatter.all_reduce = options_.whole_gradients;
    for (const auto& b : buffers_)  // all-reduced whole: the padding stays zero
      scatter.buffers.push_back(options_.whole_gradients ? b.full_grad.narrow(0, 0, b.layout->numel()) : b.full_grad);
  } else {
    // Several backwards before a step accumulate in the gradient shard.
    scatter.on_shard = [this](size_t b, const torch::Tensor& shard) {
      torch::NoGradGuard no_grad;
      buffers_[b].grad.add_(shard);
    };
    scatter.reduce_slots = kReduceSlots * (!buffers_.empty() && buffers_.front().flat.device().is_cpu());
  }
  reducer_ = std::make_shared<Reducer>(params_, names_, group_, std::move(scatter));
  reducer_->set_comm_hook(reduce_in_dtype(options_.reduce_dtype, *group_));
  reducer_->install_hooks();
}

std::vector<torch::Tensor> FlatShards::masters() const {
  std::vector<torch::Tensor> out;
  for (const auto& b : buffers_) out.push_back(b.master);
  return out;
}

void FlatShards::zero_grad() {
  torch::NoGradGuard no_grad;
  for (auto& b : buffers_) {
    (b.full_grad.defined() ? b.full_grad : b.grad).zero_();
    for (size_t k = 0; k < b.members.size(); ++k)
      if (!in_full_grad(b, k)) params_[b.members[k]].mutable_grad().reset();
  }
}

void FlatShards::set_sync(bool sync) {
  if (reducer_) reducer_->set_sync(sync);
}

void FlatShards::finalize() {
  torch::NoGradGuard no_grad;
  if (reducer_) {
    // Passes with the sync off and no synchronized backward after them:
    // reduced now, all buffers at once.
    reducer_->reduce_accumulated();
    reducer_->finalize();  // normally done when backward returned; a no-op then
  } else {
    copy_gradients_in();
  }
  // An optimizer's own zero_grad may have dropped the masters' gradients.
  for (auto& b : buffers_) b.master.mutable_grad() = b.grad;
}

// No reducer: the gradients arrive already averaged (under DDP, or after a
// pipeline stage's own dp reduction). Only this rank's pieces of each .grad
// are copied into the gradient shard; nothing whole is kept.
void FlatShards::copy_gradients_in() {
  for (auto& b : buffers_)
    for (const auto& piece : b.layout->pieces()) {
      const auto& grad = params_[b.members[piece.param]].grad();
      auto into = b.grad.narrow(0, piece.shard_offset, piece.length);
      if (grad.defined())
        into.copy_(grad.reshape({-1}).narrow(0, piece.param_offset, piece.length));
      else
        into.zero_();  // no gradient this step (unused parameter)
    }
}

void FlatShards::before_update() {
  if (shared_) group_->barrier();
}

// Every rank's updated shard, rounded to param_dtype, lands in its slot of
// every flat buffer. One copy per node: each rank writes its own slot and
// the barrier publishes them all.
void FlatShards::publish() {
  torch::NoGradGuard no_grad;
  if (shared_) {
    for (auto& b : buffers_) {
      auto mine = b.flat.narrow(0, b.layout->shard_begin(), b.layout->shard_numel());
      if (mine.data_ptr() != b.master.data_ptr()) mine.copy_(b.master);
    }
    group_->barrier();
    return;
  }
  std::vector<torch::Tensor> sources;
  std::vector<WorkHandle> works;
  for (auto& b : buffers_) {
    if (group_->size() == 1) {  // the master is the whole buffer
      if (!b.master.is_alias_of(b.flat)) b.flat.copy_(b.master);
      continue;
    }
    sources.push_back(b.master.to(b.flat.scalar_type(), /*non_blocking=*/false, /*copy=*/true));  // never the output
    works.push_back(group_->all_gather_async(b.flat, sources.back()));
  }
  for (auto& w : works) w->wait();
}

int64_t FlatShards::reductions_launched() const { return reducer_ ? reducer_->reductions_launched() : 0; }

int64_t FlatShards::gradient_bytes() const {
  int64_t n = 0;
  for (const auto& b : buffers_) n += (b.full_grad.defined() ? b.full_grad : b.grad).nbytes();
  return n;
}

}  // namespace paratorch::zero
