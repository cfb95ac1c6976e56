// src/parallel/zero/zero_engine.cpp — see zero_engine.h. Construction, the step,
// publishing, the Engine interface. Stages 1-2's buffers and gradient path
// are zero::FlatShards (flat_shards.h); stage 3's blocks as fully sharded
// units in zero_engine_stage3.cpp; whole parameters in and out of the
// shards in zero_engine_parameters.cpp.
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
  // build_stage3_units, so no rank ever holds the whole initialized model.
  if (options_.stage != 3) model_->initialize(options_.seed);
  model_->to(device_);
  for (const auto& item : model_->named_parameters(true)) {
    names_.push_back(item.key());
    params_.push_back(item.value());
  }
  if (options_.stage == 3) {
    blocks_ = model_->blocks();
    build_stage3_units();
    build_fsdp();
  } else {
    build_flat_shards();
  }
  std::vector<zero::ShardUnit> shards;
  for (auto& u : units_) shards.push_back({u->layout.get(), u->master, u->grad});
  pieces_ = zero::make_pieces(shards);
}

ZeroEngine::~ZeroEngine() = default;

int ZeroEngine::shard_ranks() const { return groups_.layout().dp; }

// Stages 1-2: the model's parameters in flat buffers of <= bucket_mb, with
// DDP's gradient reducer over them (flat_shards.h, the public
// ZeroRedundancyOptimizer's too). Stage 1 averages only this rank's shard of
// each kept gradient buffer (the optimizer reads shards only); on one node
// the parameters are one copy every rank maps, so publishing an update is a
// barrier instead of an all-gather.
void ZeroEngine::build_flat_shards() {
  zero::FlatShardsOptions o;
  o.stage = options_.stage;
  o.bucket_mb = options_.bucket_mb;
  o.param_dtype = dtype_;
  o.reduce_dtype = reduce_dtype_;
  o.whole_gradients = false;
  o.one_copy_per_node = true;
  flat_ = std::make_unique<zero::FlatShards>(params_, names_, groups_.dp(), o);
  for (const auto& b : flat_->buffers()) {
    auto unit = std::make_unique<Unit>();
    unit->members = b.members;
    unit->layout = b.layout;
    unit->master = b.master;
    unit->grad = b.grad;
    units_.push_back(std::move(unit));
  }
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
  if (flat_) {
    flat_->zero_grad();
  } else {
    torch::NoGradGuard no_grad;
    for (auto& u : units_) u->grad.zero_();
  }
  const double scale = options_.loss_scaling ? scaler_.scale() : 1.0;
  double local = 0;
  for (int k = 0; k < m; ++k) {
    const models::Batch batch = microbatches[static_cast<size_t>(k)].to(device_, dtype_);
    if (fsdp_) {
      local += forward_backward_blocks(batch, m);
      continue;
    }
    torch::Tensor loss;
    {
      report::Tracer::Span span("forward", "compute");
      loss = fp32_loss(model_->forward(batch.input), batch) / m;
    }
    report::Tracer::Span span("backward", "compute");
    // Stage 1 accumulates micro-batches in its whole gradient buffers and
    // reduces with the last one's backward; stage 2 keeps no whole gradient,
    // so every micro-batch reduce-scatters. The reducer finishes as backward returns.
    flat_->set_sync(!flat_->keeps_whole_gradients() || k + 1 == m);
    (loss * scale).backward();
    local += loss.item<double>();
  }
  if (flat_) flat_->finalize();
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
  auto output = fsdp_ ? forward_blocks(batch.input) : model_->forward(batch.input);
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
  if (flat_) flat_->before_update();  // one node copy: no rank writes while a peer still reads
  if (!options_.loss_scaling) return true;
  bool bad = false;
  for (auto& u : units_) bad = bad || !torch::isfinite(u->grad).all().item<bool>();
  auto flag = torch::tensor({bad ? 1.0 : 0.0}, torch::kDouble);
  groups_.dp()->all_reduce(flag, ReduceOp::kMax);
  tp_.group()->all_reduce(flag, ReduceOp::kMax);  // tp ranks skip together
  return scaler_.update(flag.item<double>() > 0);
}

// After an update: every rank's model gets the new parameters (stages
// 1-2: flat_shards.h); stage 3 gathers on demand before each block.
void ZeroEngine::publish_parameters() {
  if (!flat_) return;
  report::Tracer::Span span("all_gather parameters", "comm");
  flat_->publish();
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
                flat_ && flat_->shares_parameters() ? ", parameters: one copy shared by the node's dp ranks" : "");
  return line;
}

ModelStateBytes ZeroEngine::model_state_bytes() const {
  ModelStateBytes b;
  if (flat_) {
    for (const auto& buffer : flat_->buffers()) {
      b.parameters += buffer.flat.nbytes();
      if (!buffer.master.is_alias_of(buffer.flat)) b.parameters += buffer.master.nbytes();
    }
    b.gradients = flat_->gradient_bytes();
  } else {
    for (const auto& u : units_) b.parameters += u->master.nbytes(), b.gradients += u->grad.nbytes();
  }
  if (optimizer_)
    for (const auto& [name, t] : optimizer_->local_state_tensors()) b.optimizer += t.nbytes();
  return b;
}

}  // namespace paratorch::zero
