// src/parallel/zero/zero_redundancy_optimizer.cpp — ZeroRedundancyOptimizer
// (paratorch/zero.h): the user's optimizer over this rank's shards, and step.
//
// ZeRO stage 1 (Rajbhandari et al., 2019, §5.1): each of the N dp ranks
// keeps optimizer state and fp32 masters for 1/N of every flat buffer and
// updates only that; the new parameters are then all-gathered. The buffers,
// the gradient path (DDP's reducer during backward: stage 1 all-reduce,
// stage 2 reduce-scatter) and the all-gather are zero::FlatShards's
// (flat_shards.h); clipping is in zero_grad_clip.cpp, the state_dict by
// name in zero_state_dict.cpp.
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
  if (options.share_parameters_on_node)
    for (size_t i = 0; i < params.size(); ++i)
      if (!params[i].device().is_cpu())
        throw UsageError(
            "paratorch: ZeroRedundancyOptimizerOptions::share_parameters_on_node maps CPU memory, but "
            "parameter '" +
            names[i] + "' is on " + params[i].device().str() + "; set it to false");
  zero::FlatShardsOptions flat;
  flat.stage = options.stage;
  flat.bucket_mb = options.bucket_mb;
  flat.param_dtype = options.mixed_precision.param_dtype;
  flat.reduce_dtype = options.mixed_precision.reduce_dtype;
  flat.reduce_gradients = options.reduce_gradients;
  flat.whole_gradients = true;  // each .grad holds the dp average, as after DDP
  flat.one_copy_per_node = options.share_parameters_on_node;
  shards = std::make_unique<zero::FlatShards>(params, names, group, flat);
  optimizer = factory(shards->masters());
  if (!optimizer)
    throw UsageError(
        "paratorch: ZeroRedundancyOptimizer's factory returned no optimizer; return e.g. "
        "std::make_unique<torch::optim::AdamW>(flat_shards, options)");
  kinds = zero::state_kinds(*optimizer);
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

void ZeroRedundancyOptimizer::zero_grad() { impl_->shards->zero_grad(); }

bool ZeroRedundancyOptimizer::step(LossScaler* scaler) {
  Impl& s = *impl_;
  s.shards->finalize();
  if (scaler != nullptr && scaler->unscale(flat_shards(), s.group.get())) return false;
  if (s.options.max_grad_norm > 0) s.clip_gradients();
  s.shards->before_update();
  s.optimizer->step();
  ++s.steps;
  s.shards->publish();
  return true;
}

void ZeroRedundancyOptimizer::set_requires_gradient_sync(bool sync) { impl_->shards->set_sync(sync); }

int64_t ZeroRedundancyOptimizer::reductions_launched() const { return impl_->shards->reductions_launched(); }

double ZeroRedundancyOptimizer::last_grad_norm() const { return impl_->last_grad_norm; }

torch::optim::Optimizer& ZeroRedundancyOptimizer::optimizer() { return *impl_->optimizer; }

std::vector<torch::Tensor> ZeroRedundancyOptimizer::flat_shards() const { return impl_->shards->masters(); }

bool ZeroRedundancyOptimizer::parameters_shared() const { return impl_->shards->shares_parameters(); }

}  // namespace paratorch
