// src/parallel/zero/zero_engine.cpp — see zero_engine.h. Construction, the step,
// publishing, the Engine interface. The gradient path (DDP's reducer over
// the units) is in zero_engine_reduce.cpp; stage 3's blocks as fully
// sharded units in zero_engine_stage3.cpp; whole parameters in and out of the shards in zero_engine_parameters.cpp.
#include "parallel/zero/zero_engine.h"

#include "parallel/finalize_grads.h"
#include "parallel/grad_norm.h"
#include "report/trace.h"
#include "parallel/zero/zero_unit.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <cmath>

namespace paratorch::zero {

void ZeroEngineOptions::validate(int dp) const {
  if (stage < 1 || stage > 3)
    throw UsageError("paratorch: ZeroEngineOptions::stage = " + std::to_string(stage) +
                     (stage == 0 ? " shards nothing: use DataParallelEngine (compute_dtype and reduce_dtype included)"
                                 : " is not a ZeRO stage") +
                     "; use 1, 2 or 3");
  mixed_precision::require_training_dtype(compute_dtype, "ZeroEngineOptions::compute_dtype");
  mixed_precision::require_training_dtype(reduce_dtype, "ZeroEngineOptions::reduce_dtype");
  if (!(bucket_mb > 0)) throw UsageError("paratorch: ZeroEngineOptions::bucket_mb must be > 0");
  DistributedSampler check(global_batch, 0, dp);
  if (microbatches < 1 || check.local_batch() % microbatches != 0)
    throw UsageError("paratorch: ZeroEngineOptions::microbatches = " + std::to_string(microbatches) +
                     " must divide the per-replica batch " + std::to_string(check.local_batch()));
  if (release_freed_memory && stage != 3)
    throw UsageError("paratorch: ZeroEngineOptions::release_freed_memory applies to stage 3 only (stage = " +
                     std::to_string(stage) + "); set stage = 3 or leave it false");
  scaler.validate();
}

ZeroEngine::ZeroEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                       torch::Device device, ZeroEngineOptions options)
    : groups_(groups), model_(std::move(model)), device_(device), options_(options),
      dtype_(options.compute_dtype), reduce_dtype_(options.reduce_dtype),
      scaler_(options.scaler), tp_(model_->shard_specs(), groups.tp()) {
  options_.validate(groups_.layout().dp);
  // Stages 1-2 keep the whole model; stage 3 initializes unit by unit in
  // build_units, so no rank ever holds the whole initialized model.
  if (options_.stage != 3) model_->initialize(options_.seed);
  model_->to(device_);
  for (const auto& item : model_->named_parameters(true)) {
    names_.push_back(item.key());
    params_.push_back(item.value());
  }
  if (options_.stage == 3) blocks_ = model_->blocks();
  build_units();
  if (options_.stage == 3) build_fsdp();
  std::vector<zero::ShardUnit> shards;
  for (auto& u : units_) shards.push_back({u->layout.get(), u->master, u->grad});
  pieces_ = zero::make_pieces(shards);
  if (options_.stage < 3) install_reducer();
}

ZeroEngine::~ZeroEngine() {
  // Stages 1-2's buffers may live in the dp communicator's shared memory,
  // which can go before the model does: leave each parameter memory of its own.
  if (options_.stage == 3) return;
  torch::NoGradGuard no_grad;
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().reset();
    if (params_shared_) p.set_data(p.detach().clone());
  }
}

int ZeroEngine::shard_ranks() const { return groups_.layout().dp; }

// Units: stage 3 one per model block (stage3_members: tied weights in one
// more unit); stages 1-2 buckets of <= bucket_mb in reverse model order, the
// order backward produces gradients.
void ZeroEngine::build_units() {
  std::vector<std::vector<size_t>> members;
  if (options_.stage == 3) {
    members = stage3_members();
  } else {
    const double cap = options_.bucket_mb * 1024 * 1024;
    double bytes = cap;
    for (size_t k = params_.size(); k-- > 0;) {
      if (bytes >= cap) members.emplace_back(), bytes = 0;
      members.back().push_back(k);
      bytes += static_cast<double>(params_[k].numel()) * 4;
    }
  }
  const int ranks = shard_ranks(), rank = groups_.coords().dp;
  slots_.resize(params_.size());
  torch::NoGradGuard no_grad;
  Arenas arenas = allocate_arenas(members, ranks);
  for (auto& list : members) {
    auto unit = std::make_unique<Unit>();
    std::vector<zero::FlatParam> flat;
    for (size_t k = 0; k < list.size(); ++k) {
      const auto& p = params_[list[k]];
      flat.push_back({names_[list[k]], p.sizes().vec(), p.dim() >= 2});
      slots_[list[k]] = Slot{units_.size(), k};
    }
    unit->members = list;
    unit->layout = std::make_shared<zero::FlatLayout>(flat, ranks, rank);
    const auto& L = *unit->layout;
    if (options_.stage == 3) {
      std::vector<std::string> unit_names;
      for (size_t k : list) unit_names.push_back(names_[k]);
      model_->initialize(options_.seed, unit_names);
    }
    // fp32 with one node-shared copy: initialize straight into it (dp rank 0
    // writes, the barrier at the end publishes), no per-rank temporary.
    const bool into_shared = arenas.params.defined() && dtype_ == torch::kFloat;
    auto full = into_shared ? arenas.params.narrow(0, arenas.used, L.padded_numel())
                            : torch::zeros({L.padded_numel()}, torch::TensorOptions().device(device_));
    auto views = L.views(full);
    if (!into_shared || groups_.coords().dp == 0)
      for (size_t k = 0; k < list.size(); ++k) views[k].copy_(params_[list[k]]);
    auto shard = full.narrow(0, L.shard_begin(), L.shard_numel());
    if (options_.stage == 3) {
      unit->master = shard.clone();
      for (size_t k : list) params_[k].set_data(torch::empty({0}, full.options().dtype(dtype_)));
      unit->grad = torch::zeros({L.shard_numel()}, full.options());
      views.clear();
      full = torch::Tensor();
      zero::return_free_memory_to_os();  // this unit's initialized tensors, now sharded and freed
    } else {
      // fp32 stages 1-2: the model's own fp32 parameters are the masters.
      if (into_shared) {
        unit->flat_params = full;
      } else if (arenas.params.defined()) {
        // bf16/fp16 in one node copy: each rank writes its own shard (the
        // initial values are the same everywhere); the barrier publishes them.
        unit->flat_params = arenas.params.narrow(0, arenas.used, L.padded_numel());
        unit->flat_params.narrow(0, L.shard_begin(), L.shard_numel()).copy_(shard);
      } else {
        unit->flat_params = dtype_ == torch::kFloat ? full : full.to(dtype_);
      }
      unit->master =
          dtype_ == torch::kFloat ? unit->flat_params.narrow(0, L.shard_begin(), L.shard_numel()) : shard.clone();
      auto model_views = L.views(unit->flat_params);
      for (size_t k = 0; k < list.size(); ++k) params_[list[k]].set_data(model_views[k]);
      if (options_.stage < 2) {  // the reducer's bucket (fp32: .grad aliases it, install_reducer)
        unit->full_grad = arenas.grads.narrow(0, arenas.used, L.padded_numel());
        unit->grad = unit->full_grad.narrow(0, L.shard_begin(), L.shard_numel());
      } else {
        unit->grad = torch::zeros({L.shard_numel()}, full.options());
      }
    }
    arenas.used += L.padded_numel();
    units_.push_back(std::move(unit));
  }
  if (arenas.params.defined()) groups_.dp()->barrier();  // every shard written before any forward reads it
}

// Stage 1 keeps each unit's whole fp32 gradient: one buffer for all units
// from the dp communicator, which on one node is a symmetric shared-memory
// window (reduced in place, comm/symmetric_buffer.h). Stages 1-2 keep whole
// parameters: on one node a single copy that every rank maps
// (allocate_shared_buffer), so publishing an update is a barrier instead of
// an all-gather, and the node holds the parameters once, not once per rank.
ZeroEngine::Arenas ZeroEngine::allocate_arenas(const std::vector<std::vector<size_t>>& members, int ranks) {
  Arenas arenas;
  if (options_.stage == 3) return arenas;
  int64_t total = 0;
  for (const auto& list : members) {
    int64_t numel = 0;
    for (size_t k : list) numel += params_[k].numel();
    total += (numel + ranks - 1) / ranks * ranks;  // FlatLayout's padding
  }
  const auto dp = groups_.dp();
  if (options_.stage < 2) arenas.grads = dp->allocate_reduce_buffer(total, torch::kFloat).to(device_);
  if (options_.stage >= 1 && ranks > 1 && device_.is_cpu()) arenas.params = dp->allocate_shared_buffer(total, dtype_);
  params_shared_ = arenas.params.defined();
  return arenas;
}

parallel::BatchShare ZeroEngine::batch_share() const {
  return {groups_.coords().dp, groups_.layout().dp, options_.microbatches};
}

// The loss is the model's own criterion (models/*.cpp: vocab-parallel
// cross-entropy for a tp-built gpt), on the output widened to fp32.
torch::Tensor ZeroEngine::fp32_loss(const torch::Tensor& output, const models::Batch& batch) const {
  return model_->criterion(output.to(torch::kFloat), batch);
}

double ZeroEngine::forward_backward(const std::vector<models::Batch>& microbatches) {
  const int m = static_cast<int>(microbatches.size());
  {
    torch::NoGradGuard no_grad;
    for (auto& u : units_) (u->full_grad.defined() && options_.stage < 2 ? u->full_grad : u->grad).zero_();
  }
  const double scale = options_.loss_scaling ? scaler_.scale() : 1.0;
  double local = 0;
  for (int k = 0; k < m; ++k) {
    const models::Batch batch = microbatches[static_cast<size_t>(k)].to(device_, dtype_);
    if (options_.stage == 3) {
      local += forward_backward_blocks(batch, m);
      continue;
    }
    torch::Tensor loss;
    {
      report::Tracer::Span span("forward", "compute");
      loss = fp32_loss(model_->forward(batch.input), batch) / m;
    }
    report::Tracer::Span span("backward", "compute");
    // Stage 1 accumulates micro-batches in their full buffers and reduce
    // with the last one's backward; stage 2 keeps no full gradient, so every
    // micro-batch reduce-scatters. The reducer finishes as backward returns.
    reducer_->set_sync(options_.stage == 2 || k + 1 == m);
    (loss * scale).backward();
    reducer_->finalize();
    local += loss.item<double>();
  }
  // ZeRO has no tied copies across ranks (every replica holds the whole
  // model): what is left after the dp reduction is tp's partial sums.
  parallel::FinalizeGradients f;
  f.partial_over_tp = tp_.partial_gradients(pieces_.tensors);
  f.tp = tp_.group();
  parallel::finalize_gradients(f);
  if (scale != 1.0) unscale_gradients();
  auto global = torch::tensor({local}, torch::kDouble);
  groups_.dp()->all_reduce(global, ReduceOp::kAvg);
  return global.item<double>();
}

parallel::EvalResult ZeroEngine::evaluate(const models::Batch& piece) {
  torch::NoGradGuard no_grad;
  model_->eval();
  auto batch = piece.to(device_, dtype_);
  auto output = options_.stage == 3 ? forward_blocks(batch.input) : model_->forward(batch.input);
  const parallel::EvalResult mine = parallel::score_output(*model_, output, batch);
  auto sums = torch::tensor({mine.loss, mine.accuracy}, torch::kDouble);
  groups_.dp()->all_reduce(sums, ReduceOp::kAvg);
  model_->train();
  return {sums[0].item<double>(), mine.accuracy < 0 ? -1.0 : sums[1].item<double>()};
}

void ZeroEngine::unscale_gradients() {
  torch::NoGradGuard no_grad;
  for (auto& u : units_) u->grad.div_(scaler_.scale());
}

// The loss scaler's decision, the same on every rank: a non-finite gradient
// anywhere in any shard skips the step (and halves the scale).
bool ZeroEngine::may_step() {
  // One parameter copy on the node: no rank may overwrite its shard while a
  // peer still reads the parameters (its backward). Cheap: a barrier.
  if (params_shared_) groups_.dp()->barrier();
  if (!options_.loss_scaling) return true;
  bool bad = false;
  for (auto& u : units_) bad = bad || !torch::isfinite(u->grad).all().item<bool>();
  auto flag = torch::tensor({bad ? 1.0 : 0.0}, torch::kDouble);
  groups_.dp()->all_reduce(flag, ReduceOp::kMax);
  tp_.group()->all_reduce(flag, ReduceOp::kMax);  // tp ranks skip together
  return scaler_.update(flag.item<double>() > 0);
}

// After an update: every rank's model gets the new parameters. Stages 1-2
// all-gather each unit's shard (in the compute precision); dp = 1 copies;
// stage 3 gathers on demand before each block.
void ZeroEngine::publish_parameters() {
  if (options_.stage == 3) return;
  report::Tracer::Span span("all_gather parameters", "comm");
  torch::NoGradGuard no_grad;
  std::vector<std::pair<WorkHandle, torch::Tensor>> works;
  if (params_shared_) {  // one copy on the node: write this rank's shard, then everyone sees all
    for (auto& u : units_) {
      auto mine = u->flat_params.narrow(0, u->layout->shard_begin(), u->layout->shard_numel());
      if (!u->master.is_same(mine)) mine.copy_(u->master);
    }
    groups_.dp()->barrier();
    return;
  }
  for (auto& u : units_) {
    if (shard_ranks() == 1) {  // dp = 1: the master is the whole unit
      if (!u->master.is_alias_of(u->flat_params)) u->flat_params.copy_(u->master);
      continue;
    }
    auto src = u->master.to(dtype_, /*non_blocking=*/false, /*copy=*/true);  // never alias the output
    works.emplace_back(groups_.dp()->all_gather_async(u->flat_params, src), src);
  }
  for (auto& w : works) w.first->wait();
}

std::unique_ptr<optim::Optimizer> ZeroEngine::build_optimizer(const optim::OptimizerOptions& options) {
  std::vector<zero::ShardUnit> shards;
  for (auto& u : units_) shards.push_back({u->layout.get(), u->master, u->grad});
  auto group = shard_ranks() > 1 ? groups_.dp() : nullptr;
  auto optimizer = std::make_unique<zero::ShardedOptimizer>(
      options, shards, pieces_, group, [this] { return may_step(); }, [this] { publish_parameters(); });
  optimizer_ = optimizer.get();
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& u : units_)
    for (const auto& p : u->layout->params()) shapes[p.name] = p.shape;
  return tp_.with_whole_state(std::move(optimizer), std::move(shapes));
}

// The dp shards' squares summed over dp; under tp, shards summed over tp and
// replicated parameters counted once (parallel/grad_norm.h).
parallel::SumAcross ZeroEngine::grad_norm_across() {
  const bool over_dp = shard_ranks() > 1;
  if (!over_dp && tp_.size() == 1) return nullptr;  // every rank holds every piece
  return [this, over_dp](double squares) {
    return parallel::sum_squares_across(squares, tp_.norm_entries(pieces_.tensors),
                                        {over_dp ? groups_.dp().get() : nullptr, tp_.group()});
  };
}

std::map<std::string, torch::Tensor> ZeroEngine::checkpoint_state() {
  return options_.loss_scaling ? scaler_.state() : std::map<std::string, torch::Tensor>{};
}

void ZeroEngine::load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) {
  if (options_.loss_scaling) scaler_.load_state(state);
}

std::map<std::string, double> ZeroEngine::step_metrics() {
  return options_.loss_scaling ? scaler_.metrics() : std::map<std::string, double>{};
}

std::string ZeroEngine::describe() {
  char line[240];
  std::snprintf(line, sizeof line, "ZeRO stage %d over %d dp rank(s)%s, %s compute, %zu unit(s)%s%s", options_.stage,
                groups_.layout().dp,
                tp_.size() > 1 ? (" of each tp=" + std::to_string(tp_.size()) + " shard").c_str() : "",
                mixed_precision::precision_name(options_.compute_dtype).c_str(), units_.size(),
                groups_.layout().dp == 1 ? " (dp = 1: nothing to shard, ZeRO does nothing)" : "",
                params_shared_ ? ", parameters: one copy shared by the node's dp ranks" : "");
  return line;
}

ModelStateBytes ZeroEngine::model_state_bytes() const {
  ModelStateBytes b;
  for (const auto& u : units_) {
    if (u->flat_params.defined()) b.parameters += u->flat_params.nbytes();
    const bool master_is_view = u->flat_params.defined() && u->master.is_alias_of(u->flat_params);
    if (!master_is_view) b.parameters += u->master.nbytes();
    b.gradients += (options_.stage < 2 ? u->full_grad : u->grad).nbytes();
  }
  if (optimizer_)
    for (const auto& [name, t] : optimizer_->local_state_tensors()) b.optimizer += t.nbytes();
  return b;
}

}  // namespace paratorch::zero
