// src/parallel/zero/zero_redundancy_optimizer.cpp — ZeroRedundancyOptimizer
// (paratorch/zero.h): flat buffers, the user's optimizer over this rank's
// shards, step and the all-gather of the updated parameters.
//
// ZeRO stage 1 (Rajbhandari et al., 2019, §5.1): each of the N dp ranks
// keeps optimizer state and fp32 masters for 1/N of every flat buffer and
// updates only that; the new parameters are then all-gathered. The flat
// arithmetic (padding, shard ranges) is parallel/zero/flat_buffer.h's; the gradient
// path (DDP's reducer during backward: stage 1 all-reduce, stage 2 reduce-scatter) is in
// zero_gradient_path.cpp, the state_dict by name in zero_state_dict.cpp.
#include "parallel/zero/zero_redundancy_impl.h"

#include "parallel/zero/optimizer_state.h"
#include <paratorch/ddp.h>
#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch {

void ZeroRedundancyOptimizerOptions::validate() const {
  if (stage != 1 && stage != 2)
    throw UsageError("paratorch: ZeroRedundancyOptimizerOptions::stage = " + std::to_string(stage) +
                     " must be 1 or 2 (stage 3 is fully_shard)");
  if (!(bucket_mb > 0))
    throw UsageError("paratorch: ZeroRedundancyOptimizerOptions::bucket_mb = " + std::to_string(bucket_mb) +
                     " must be > 0");
  if (stage == 2 && !reduce_gradients)
    throw UsageError("paratorch: ZeroRedundancyOptimizerOptions::reduce_gradients = false needs stage 1; "
                     "stage 2 reduce-scatters the gradients itself (do not wrap the module in DDP)");
  if (!(max_grad_norm >= 0))
    throw UsageError("paratorch: ZeroRedundancyOptimizerOptions::max_grad_norm = " + std::to_string(max_grad_norm) +
                     " must be >= 0 (0 turns clipping off)");
  mixed_precision.validate();
}

// Parameters are copied into fp32 flat buffers, this rank's shard is cloned
// as the master, and the module's parameters become views of the buffer
// cast to param_dtype.
void ZeroRedundancyOptimizer::Impl::build_buffers(const OptimizerFactory& factory) {
  torch::NoGradGuard no_grad;
  const auto plan = plan_buckets(params, static_cast<int64_t>(options.bucket_mb * 1024 * 1024));
  const auto param_dtype = options.mixed_precision.param_dtype;
  slot.resize(params.size());
  std::vector<torch::Tensor> shards;
  for (const auto& bucket : plan) {
    FlatBuffer b;
    b.members = bucket.params;
    std::vector<zero::FlatParam> layout_params;
    for (size_t i : b.members) layout_params.push_back({names[i], params[i].sizes().vec(), false});
    b.layout = std::make_unique<zero::FlatLayout>(std::move(layout_params), group->size(), group->rank());
    auto full = torch::zeros({b.layout->padded_numel()}, params[b.members[0]].options().dtype(torch::kFloat));
    const auto views = b.layout->views(full);
    for (size_t k = 0; k < b.members.size(); ++k) {
      views[k].copy_(params[b.members[k]]);
      slot[b.members[k]] = {buffers.size(), k};
    }
    b.shard = full.narrow(0, b.layout->shard_begin(), b.layout->shard_numel()).clone().requires_grad_(true);
    b.flat = param_dtype == torch::kFloat ? full : full.to(param_dtype);
    const auto param_views = b.layout->views(b.flat);
    for (size_t k = 0; k < b.members.size(); ++k) params[b.members[k]].set_data(param_views[k]);
    shards.push_back(b.shard);
    buffers.push_back(std::move(b));
  }
  optimizer = factory(shards);
  if (!optimizer)
    throw UsageError("paratorch: ZeroRedundancyOptimizer's factory returned no optimizer; return e.g. "
                     "std::make_unique<torch::optim::AdamW>(flat_shards, options)");
  kinds = zero::state_kinds(*optimizer);
}

// Both constructors end here once params/names (the trainable tensors, in
// the order every dp rank shares) are filled; `source` names what they came
// from, for the error.
void ZeroRedundancyOptimizer::Impl::init(std::shared_ptr<Communicator> dp_group, const OptimizerFactory& factory,
                                         const ZeroRedundancyOptimizerOptions& opts, const std::string& source) {
  if (!dp_group) throw UsageError("paratorch: ZeroRedundancyOptimizer's dp_group is null");
  if (!factory) throw UsageError("paratorch: ZeroRedundancyOptimizer's factory is empty");
  if (params.empty())
    throw UsageError("paratorch: ZeroRedundancyOptimizer's " + source + " has no parameter that requires grad");
  group = std::move(dp_group);
  options = opts;
  if (options.max_grad_norm > 0 && options.clip_tp_group && options.clip_tp_group->size() > 1)
    for (const auto& name : names)
      if (!options.clip_tp_specs.count(name))
        throw UsageError("paratorch: ZeroRedundancyOptimizerOptions::clip_tp_specs has no entry for parameter '" +
                         name + "'; pass tensor_parallel::shard_specs() of the parallelized module");
  for (const auto& name : options.clip_tied_copies)
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw UsageError("paratorch: ZeroRedundancyOptimizerOptions::clip_tied_copies names '" + name +
                       "', which is no parameter of this optimizer; pass Pipeline::tied_copies()");
  build_buffers(factory);
  if (options.stage == 2 || (options.reduce_gradients && group->size() > 1)) install_reducer();
}

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(std::shared_ptr<torch::nn::Module> module,
                                                 std::shared_ptr<Communicator> dp_group, OptimizerFactory factory,
                                                 ZeroRedundancyOptimizerOptions options)
    : impl_(std::make_unique<Impl>()) {
  options.validate();
  if (!module) throw UsageError("paratorch: ZeroRedundancyOptimizer's module is null");
  for (const auto& item : module->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    impl_->params.push_back(item.value());
    impl_->names.push_back(item.key());
  }
  impl_->module = std::move(module);
  impl_->init(std::move(dp_group), factory, options, "module");
}

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(const std::map<std::string, torch::Tensor>& named_parameters,
                                                 std::shared_ptr<Communicator> dp_group, OptimizerFactory factory,
                                                 ZeroRedundancyOptimizerOptions options)
    : impl_(std::make_unique<Impl>()) {
  options.validate();
  // A std::map's order (by name) is the same on every dp rank; it decides
  // the flat buffers' layout, so the shards line up across the group.
  for (const auto& [name, tensor] : named_parameters) {
    if (!tensor.defined() || !tensor.requires_grad()) continue;
    impl_->params.push_back(tensor);
    impl_->names.push_back(name);
  }
  impl_->init(std::move(dp_group), factory, options, "named_parameters");
}

ZeroRedundancyOptimizer::~ZeroRedundancyOptimizer() = default;

void ZeroRedundancyOptimizer::zero_grad() {
  torch::NoGradGuard no_grad;
  for (auto& b : impl_->buffers) {
    if (b.full_grad.defined() && impl_->options.stage == 1) b.full_grad.zero_();
    if (b.shard.grad().defined()) b.shard.mutable_grad().zero_();
  }
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    const auto [buffer, member] = impl_->slot[i];
    const auto& views = impl_->buffers[buffer].grad_views;
    auto& grad = impl_->params[i].mutable_grad();
    if (grad.defined() && !(views.size() > member && grad.data_ptr() == views[member].data_ptr())) grad.reset();
  }
}

bool ZeroRedundancyOptimizer::step(LossScaler* scaler) {
  Impl& s = *impl_;
  // Gradients accumulated with the sync off and no synchronized backward
  // after them: reduced now, all buffers at once.
  if (s.reducer) s.reducer->reduce_accumulated();
  if (s.options.stage == 1)
    s.reduce_stage1();
  else
    s.reducer->finalize();  // normally done when backward returned; a no-op then
  if (scaler != nullptr && scaler->unscale(flat_shards(), s.group.get())) return false;
  if (s.options.max_grad_norm > 0) s.clip_gradients();
  s.optimizer->step();
  ++s.steps;
  s.all_gather_parameters();
  return true;
}

// Every rank's updated shard, rounded to param_dtype, lands in its slot of
// every flat buffer, which the module's parameters view.
void ZeroRedundancyOptimizer::Impl::all_gather_parameters() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> sources;
  std::vector<WorkHandle> works;
  for (auto& b : buffers) {
    sources.push_back(b.shard.detach().to(b.flat.scalar_type(), /*non_blocking=*/false, /*copy=*/true));
    if (group->size() > 1) works.push_back(group->all_gather_async(b.flat, sources.back()));
    else b.flat.copy_(sources.back());
  }
  for (auto& w : works) w->wait();
}

void ZeroRedundancyOptimizer::set_requires_gradient_sync(bool sync) {
  if (impl_->reducer) impl_->reducer->set_sync(sync);
}

int64_t ZeroRedundancyOptimizer::reductions_launched() const {
  return impl_->reducer ? impl_->reducer->reductions_launched() : 0;
}

double ZeroRedundancyOptimizer::last_grad_norm() const { return impl_->last_grad_norm; }

torch::optim::Optimizer& ZeroRedundancyOptimizer::optimizer() { return *impl_->optimizer; }

std::vector<torch::Tensor> ZeroRedundancyOptimizer::flat_shards() const {
  std::vector<torch::Tensor> out;
  for (const auto& b : impl_->buffers) out.push_back(b.shard);
  return out;
}

}  // namespace paratorch
