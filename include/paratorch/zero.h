// paratorch/zero.h — ZeRO (Rajbhandari et al., 2019, "ZeRO: Memory
// Optimizations Toward Training Trillion Parameter Models") for any
// torch::nn::Module and any torch::optim optimizer: the C++ counterparts of
// torch.distributed.optim.ZeroRedundancyOptimizer (stages 1-2) and
// torch.distributed.fsdp.fully_shard (stage 3).
//
// Stages 1-2, ZeroRedundancyOptimizer. PyTorch:
//   opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=1e-3)
// paratorch:
///   paratorch::ZeroRedundancyOptimizerOptions zero;
///   zero.stage = 2;
///   paratorch::ZeroRedundancyOptimizer opt(model.ptr(), world.comm(),
///       [](std::vector<torch::Tensor> shards) {
///         return std::make_unique<torch::optim::AdamW>(shards, torch::optim::AdamWOptions(1e-3));
///       }, zero);
///   for (...) {
///     opt.zero_grad();
///     loss_of(model->forward(my_slice.input)).backward();  // stage 2: reduce-scatter overlaps backward
///     opt.step();                                           // updates this rank's shard, all-gathers
///   }
///   auto state = opt.state_dict();   // by parameter name, full shapes; loads at any dp size
//
// Stage 3, fully_shard. PyTorch:
//   for block in model.blocks: fully_shard(block); fully_shard(model)
// paratorch (units are children of a torch::nn::Sequential, replaced in place):
///   paratorch::FullyShardOptions fsdp;
///   fsdp.units = {"layers.0", "layers.1", "layers.2", "layers.3"};  // model->layers: a Sequential
///   auto sharded = paratorch::fully_shard(model.ptr(), world.comm(), fsdp);
///   torch::optim::AdamW opt(sharded.parameters(), 1e-3);  // the fp32 shards
///   ... model->forward(x) as before; loss.backward(); opt.step(); ...
///   auto full = sharded.full_parameters();                // collective: every name, full shape
#pragma once
#include <paratorch/checkpoint.h>
#include <paratorch/communicator.h>
#include <paratorch/ddp.h>
#include <paratorch/mixed_precision.h>
#include <paratorch/tensor_parallel_layers.h>

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch {

/// Builds the user's optimizer over this rank's flat fp32 shards (one 1-D
/// tensor per flat buffer).
using OptimizerFactory =
    std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor> flat_shards)>;

struct ZeroRedundancyOptimizerOptions {
  /// 1: optimizer state and fp32 masters sharded; gradients all-reduced
  /// during backward by DDP's reducer, each flat buffer as soon as its
  /// gradients are final (each .grad then holds the dp average, as with DDP).
  /// 2: also gradients: each flat buffer is reduce-scattered during backward
  /// as soon as its gradients are final, and a rank keeps only its shard.
  int stage = 1;
  /// Size of one flat buffer in MiB (parameters grouped in reverse order, as
  /// DDP's buckets: backward produces the last layers' gradients first).
  double bucket_mb = 25.0;
  /// Stage 1 only: false when the gradients arrive already averaged (the
  /// module is wrapped in DistributedDataParallel).
  bool reduce_gradients = true;
  /// Compute and reduction dtypes; the masters and optimizer state are fp32.
  MixedPrecisionPolicy mixed_precision;
  /// true: the dp ranks of one node map one copy of the parameters instead
  /// of a copy each (CPU training with several ranks per node: the node then
  /// holds the parameters once). Each rank writes its updated shard into
  /// that copy and step() publishes it with a barrier instead of an
  /// all-gather. A write to a parameter by one rank is then seen by all:
  /// change parameters outside step() from one rank, then barrier. Where the
  /// group spans nodes, or the backend has no shared memory, each rank keeps
  /// its own copy as with false (parameters_shared() says which). CPU
  /// parameters only: UsageError naming a parameter on another device. The
  /// copy is memory of `dp_group`, released when the group goes.
  bool share_parameters_on_node = false;
  /// > 0: step() clips the gradient shards by the whole model's gradient
  /// norm before the inner optimizer steps (DeepSpeed's gradient_clipping;
  /// torch::nn::utils::clip_grad_norm_'s rule), summing the shards' squares
  /// over the dp group and, where the model is split further, over the
  /// groups below. 0: no clipping.
  double max_grad_norm = 0;
  /// The pp group when the parameters are a pipeline stage's (the named
  /// constructor over Pipeline::named_parameters()); null otherwise.
  std::shared_ptr<Communicator> clip_pp_group;
  /// Parameters whose gradient another stage counts (Pipeline::tied_copies()
  /// with PipelineOptions::tied): left out of the norm, still clipped.
  std::vector<std::string> clip_tied_copies;
  /// With tensor-parallel layers: the tp group and every parameter's split
  /// by name (tensor_parallel::shard_specs of the parallelized module), so
  /// slices add over tp and replicated parameters count once.
  std::shared_ptr<Communicator> clip_tp_group;
  std::map<std::string, tensor_parallel::ShardSpec> clip_tp_specs;
  /// Throws UsageError naming the field when a value is out of range.
  void validate() const;
};

/// Shards the state of any torch::optim optimizer over a data-parallel group
/// (ZeRO stages 1-2). The module's parameters become views of flat buffers
/// (padded to a multiple of the group size); each rank builds the user's
/// optimizer over its shard of every buffer and, after each step,
/// all-gathers the updated parameters. Every rank must start from the same
/// parameter values (as DDP's broadcast leaves them).
class ZeroRedundancyOptimizer {
 public:
  /// UsageError when `module` or `dp_group` is null, the module has no
  /// trainable parameter, or the factory returns no optimizer.
  ZeroRedundancyOptimizer(std::shared_ptr<torch::nn::Module> module, std::shared_ptr<Communicator> dp_group,
                          OptimizerFactory factory, ZeroRedundancyOptimizerOptions options = {});
  /// The same over named parameters rather than a whole module: the part of
  /// a model this rank holds, e.g. a pipeline stage's
  /// (Pipeline::named_parameters()) when ZeRO runs inside each stage of a
  /// dp × pp layout. Every rank of `dp_group` passes the same names and
  /// shapes. UsageError when `named_parameters` holds no trainable tensor.
  ///   paratorch::ZeroRedundancyOptimizer opt(pipe.named_parameters(), groups.dp(), factory);
  ZeroRedundancyOptimizer(const std::map<std::string, torch::Tensor>& named_parameters,
                          std::shared_ptr<Communicator> dp_group, OptimizerFactory factory,
                          ZeroRedundancyOptimizerOptions options = {});
  ~ZeroRedundancyOptimizer();
  ZeroRedundancyOptimizer(const ZeroRedundancyOptimizer&) = delete;
  ZeroRedundancyOptimizer& operator=(const ZeroRedundancyOptimizer&) = delete;

  /// Zeroes the module's gradients and this rank's gradient shards.
  void zero_grad();
  /// Completes the gradient reduction, steps the inner optimizer on this
  /// rank's shards and all-gathers the parameters. With a `scaler`, the
  /// shards' gradients are unscaled first and the step is skipped (returns
  /// false, the same on every rank) when one is inf/NaN; call
  /// scaler->update() afterwards, as with GradScaler. Collective.
  bool step(LossScaler* scaler = nullptr);
  /// false: the following backward passes accumulate gradients without
  /// reducing them (DDP's no_sync, FSDP2's set_requires_gradient_sync); the
  /// next backward with true reduces the total during its pass, or else
  /// step() reduces it, all buffers at once. Stage 2 then keeps whole
  /// gradients between the passes, as FSDP does. Inside a pipeline,
  /// Pipeline::set_gradient_sync turns it on for each step's last backward only:
  ///   pipe.set_gradient_sync([&opt](bool last) { opt.set_requires_gradient_sync(last); });
  void set_requires_gradient_sync(bool sync);
  /// Flat-buffer reductions launched so far (0 when nothing is reduced:
  /// one rank, or reduce_gradients = false).
  int64_t reductions_launched() const;

  /// The gradient norm the last step() measured before clipping
  /// (options.max_grad_norm > 0; -1 before the first such step).
  double last_grad_norm() const;
  /// The user's optimizer (e.g. to change its learning rate).
  torch::optim::Optimizer& optimizer();
  /// This rank's fp32 shards (what the optimizer steps).
  std::vector<torch::Tensor> flat_shards() const;
  /// Whether the parameters are one copy that every rank of the node maps
  /// (options.share_parameters_on_node, where the group and backend allow it).
  bool parameters_shared() const;

  /// The optimizer's state as an unsharded optimizer of the same type would
  /// hold it: "<parameter name>.<state>" at the parameter's shape (AdamW/Adam:
  /// exp_avg, exp_avg_sq[, max_exp_avg_sq]; SGD: momentum_buffer; Adagrad:
  /// sum) plus "step". Collective (all-gathers the shards).
  std::map<std::string, torch::Tensor> state_dict() const;
  /// Loads a state_dict() written at any dp size. RuntimeFailure naming the
  /// missing or mis-sized tensor.
  void load_state_dict(const std::map<std::string, torch::Tensor>& state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// How a unit runs: its module and input in, its output out.
using UnitForward = std::function<torch::Tensor(torch::nn::Module& unit, const torch::Tensor& input)>;

/// UnitForward for units of type `M` (the Impl class): calls M::forward.
template <typename M>
UnitForward forward_as() {
  return [](torch::nn::Module& unit, const torch::Tensor& input) { return unit.as<M>()->forward(input); };
}

struct FullyShardOptions {
  /// The units, as dotted names of descendants of the module (e.g.
  /// "blocks.0"); empty = the module's direct children. Each must be an
  /// element of a torch::nn::Sequential or ModuleList (it is replaced there
  /// by its FsdpUnit; see forward_unit for a ModuleList's caller), and
  /// together they must hold every parameter of the module. A tensor that
  /// two units share (tied weights, e.g. an embedding and the output head)
  /// is sharded once, gathered while any of them runs and until the
  /// backward ends, and its gradient is summed over both (PyTorch FSDP keeps
  /// such weights in the root unit).
  std::vector<std::string> units;
  /// Issue the next unit's all-gather before this unit computes (the
  /// previous unit's in backward), so it overlaps the compute.
  bool prefetch = true;
  /// Free a unit's gathered parameters after its forward and gather them
  /// again in backward (ZeRO-3); false keeps them until the backward.
  bool reshard_after_forward = true;
  /// Broadcast rank 0's parameters before sharding (PyTorch FSDP's
  /// sync_module_states).
  bool sync_module_states = true;
  /// param_dtype: dtype the units are gathered and compute in (their inputs
  /// are cast to it); reduce_dtype: dtype of the gradient reduce-scatter.
  MixedPrecisionPolicy mixed_precision;
  /// How units that sit in a ModuleList compute (a Sequential's own slot
  /// knows): e.g. forward_as<BlockImpl>(). Required when any unit does.
  UnitForward unit_forward;
  void validate() const;
};

struct FsdpState;

/// One fully sharded unit: holds this rank's fp32 shard of the unit's
/// parameters ("flat_param", what the optimizer steps). forward(x) gathers
/// the parameters, runs the wrapped module and frees them; its backward
/// gathers them again, recomputes the unit (activation checkpointing,
/// Chen et al. 2016), and reduce-scatters the gradients into the shard.
class FsdpUnitImpl : public torch::nn::Module {
 public:
  FsdpUnitImpl(std::shared_ptr<FsdpState> state, size_t index);
  torch::Tensor forward(const torch::Tensor& input);
  /// The unit's name (as given in FullyShardOptions::units).
  const std::string& name() const;

 private:
  std::shared_ptr<FsdpState> state_;
  size_t index_;
};
TORCH_MODULE(FsdpUnit);

/// Runs a ModuleList element `m` of type `M`, sharded or not: through its
/// FsdpUnit once fully_shard replaced it, else as M. Write the model's loop
/// with it and the same model runs whole and fully sharded:
///   for (const auto& m : *blocks) x = paratorch::forward_unit<BlockImpl>(m, x);
template <typename M>
torch::Tensor forward_unit(const std::shared_ptr<torch::nn::Module>& m, const torch::Tensor& input) {
  if (auto* unit = m->as<FsdpUnitImpl>()) return unit->forward(input);
  return m->as<M>()->forward(input);
}

/// What fully_shard returns: the units and the way back to full parameters.
class FullyShardedModule {
 public:
  explicit FullyShardedModule(std::shared_ptr<FsdpState> state);
  /// Replaces how the units' gradients are reduce-scattered (PyTorch FSDP's
  /// register_comm_hook): the hook gets each unit's full fp32 gradient as a
  /// reduce-scatter bucket (GradBucket::shard defined). The default is
  /// comm_hooks::allreduce(), or bf16_compress()/fp16_compress() for a 16-bit
  /// mixed_precision.reduce_dtype. Call it before the first backward.
  void register_comm_hook(CommHook hook);
  /// Every unit's shard, for the optimizer (also module->parameters() now).
  std::vector<torch::Tensor> parameters() const;
  /// Clips the shards' gradients by the whole model's gradient norm, summed
  /// over the group (PyTorch FSDP's clip_grad_norm_; paratorch/grad_clip.h).
  /// Call it after backward, before the optimizer's step. Returns the norm
  /// before clipping. Collective. UsageError unless max_norm > 0.
  double clip_grad_norm(double max_norm) const;
  std::vector<FsdpUnit> units() const;
  /// The unit named `name`; UsageError when there is none.
  FsdpUnit unit(const std::string& name) const;
  /// Every parameter under its name in the unsharded module, at its full
  /// shape, fp32 (collective: all-gathers the shards).
  std::map<std::string, torch::Tensor> full_parameters() const;
  /// This rank's pieces of every parameter and of `optimizer`'s state for
  /// them (the optimizer over parameters()), for save_sharded_checkpoint: no
  /// gather, each element from its one holder; "<name>.step" and "step"
  /// (= `step`) from the holder of the first element and rank 0. A tied
  /// weight's pieces and state come under each of its names. Not collective.
  ///   paratorch::save_sharded_checkpoint("ckpt", step, sharded.checkpoint_slices(opt, step), *world.comm());
  std::vector<CheckpointSlice> checkpoint_slices(const torch::optim::Optimizer& optimizer, int64_t step) const;

 private:
  std::shared_ptr<FsdpState> state_;
};

/// ZeRO stage 3 over `module`'s units (FullyShardOptions::units). Each unit
/// keeps 1/N of its parameters (padded flat fp32 shard) on each rank of
/// `dp_group` and is replaced in its Sequential (or ModuleList) by an
/// FsdpUnit, so the module's own forward runs the units unchanged (a
/// ModuleList's loop through forward_unit). The units' inputs and
/// outputs are single tensors. Tied weights shared by units become one more
/// shard (registered on `module` as "fsdp_tied_flat_param"; full_parameters
/// lists them under each name). Collective. UsageError when a unit name is
/// unknown or not in a Sequential or ModuleList (one in a ModuleList without
/// FullyShardOptions::unit_forward), when two units overlap or one is named
/// twice, or when a parameter is in no unit.
FullyShardedModule fully_shard(const std::shared_ptr<torch::nn::Module>& module,
                               std::shared_ptr<Communicator> dp_group, FullyShardOptions options = {});

}  // namespace paratorch
