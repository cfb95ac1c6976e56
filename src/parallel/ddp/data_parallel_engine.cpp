// src/parallel/ddp/data_parallel_engine.cpp — see data_parallel_engine.h.
#include "parallel/ddp/data_parallel_engine.h"

#include "parallel/checkpoint/checkpoint_pieces.h"

#include "parallel/ddp/reducer.h"
#include "parallel/finalize_grads.h"
#include "parallel/mixed_precision/precision.h"
#include "report/trace.h"
#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::parallel {

void DataParallelEngineOptions::validate(int dp) const {
  DistributedSampler check(global_batch, 0, dp);
  if (microbatches < 1 || check.local_batch() % microbatches != 0)
    throw UsageError("paratorch: DataParallelEngineOptions::microbatches = " + std::to_string(microbatches) +
                     " must divide the per-replica batch " + std::to_string(check.local_batch()) +
                     " (global_batch " + std::to_string(global_batch) + " / dp " + std::to_string(dp) + ")");
  compression.validate();
  mixed_precision::require_training_dtype(compute_dtype, "DataParallelEngineOptions::compute_dtype");
  mixed_precision::require_training_dtype(reduce_dtype, "DataParallelEngineOptions::reduce_dtype");
  scaler.validate();
  if (compression.kind != parallel::CompressionKind::kNone &&
      (compute_dtype != torch::kFloat || reduce_dtype != torch::kFloat))
    throw UsageError(
        "paratorch: DataParallelEngineOptions::compression compresses fp32 gradients; set compute_dtype "
        "and reduce_dtype to torch::kFloat, or compression to none");
}

DataParallelEngine::DataParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                                       torch::Device device, DataParallelEngineOptions options)
    : groups_(groups), model_(std::move(model)), device_(device), options_(options),
      tp_(model_->shard_specs(), groups.tp()), compression_(options_.compression, groups.dp()) {
  options_.validate(groups_.layout().dp);
  model_->initialize(options_.seed);
  model_->to(device_);
  precision_ = std::make_unique<mixed_precision::MixedPrecision>(
      model_parameters(),
      mixed_precision::MixedPrecisionOptions{options_.compute_dtype, options_.loss_scaling, options_.scaler});
  DDPOptions ddp_options;
  ddp_options.bucket_mb = options_.bucket_mb;
  if (precision_->enabled()) ddp_options.main_grad_dtype = torch::kFloat;  // accumulate and average in fp32
  ddp_ = std::make_unique<DistributedDataParallel>(model_, groups_.dp(), ddp_options);
  ddp_->register_comm_hook(reduce_in_dtype(options_.reduce_dtype, *groups_.dp()));
  if (precision_->enabled()) {
    std::map<std::string, torch::Tensor> main;
    const auto grads = ddp_->main_grads();
    const auto params = model_parameters();
    for (size_t i = 0; i < params.size(); ++i) main[params[i].first] = grads[i];
    precision_->use_gradients(std::move(main));
  }
  if (options_.compression.kind != parallel::CompressionKind::kNone && tp_.size() > 1)
    throw UsageError("paratorch: DataParallelEngineOptions::compression needs tp = 1 (each tp rank's compressor "
                     "state would need a checkpoint of its own)");
  compression_.install(*ddp_, named_parameters());
}

BatchShare DataParallelEngine::batch_share() const {
  return {groups_.coords().dp, groups_.layout().dp, options_.microbatches};
}

double DataParallelEngine::forward_backward(const std::vector<models::Batch>& microbatches) {
  const int m = static_cast<int>(microbatches.size());
  const double scale = precision_->loss_scale();  // fp16's S, else 1
  double local = 0;
  for (int k = 0; k < m; ++k) {
    const models::Batch batch = microbatches[static_cast<size_t>(k)].to(device_, options_.compute_dtype);
    torch::Tensor loss;
    {
      report::Tracer::Span span("forward", "compute");
      // Losses in fp32, from the output widened (a no-op in fp32).
      loss = model_->criterion(model_->forward(batch.input).to(torch::kFloat), batch) / m;
    }
    report::Tracer::Span span("backward", "compute");
    const torch::Tensor scaled = scale == 1.0 ? loss : loss * scale;
    if (k + 1 < m) {
      auto no_sync = ddp_->no_sync();  // accumulate; reduce with the last piece
      scaled.backward();
    } else {
      scaled.backward();  // returns with gradients averaged over replicas
    }
    local += loss.item<double>();
  }
  precision_->finish_gradients();  // masters' .grad = the fp32 averages / S
  parallel::FinalizeGradients f;  // dp was DDP's; what is left is tp's partial sums
  f.partial_over_tp = tp_.partial_gradients(named_parameters());
  f.tp = tp_.group();
  parallel::finalize_gradients(f);
  auto global = torch::tensor({local}, torch::kDouble);
  groups_.dp()->all_reduce(global, ReduceOp::kAvg);
  return global.item<double>();
}

EvalResult DataParallelEngine::evaluate(const models::Batch& piece) {
  torch::NoGradGuard no_grad;
  model_->eval();
  auto batch = piece.to(device_, options_.compute_dtype);
  const EvalResult mine = score_output(*model_, model_->forward(batch.input), batch);
  auto sums = torch::tensor({mine.loss, mine.accuracy}, torch::kDouble);
  groups_.dp()->all_reduce(sums, ReduceOp::kAvg);
  model_->train();
  return {sums[0].item<double>(), mine.accuracy < 0 ? -1.0 : sums[1].item<double>()};
}

optim::NamedTensors DataParallelEngine::model_parameters() const {
  optim::NamedTensors out;
  for (const auto& item : model_->named_parameters(true)) out.emplace_back(item.key(), item.value());
  return out;
}

// What the optimizer trains: the fp32 masters in mixed precision.
optim::NamedTensors DataParallelEngine::named_parameters() {
  optim::NamedTensors out;
  for (const auto& [name, p] : model_parameters()) out.emplace_back(name, precision_->trained(name, p));
  return out;
}

// A non-finite gradient on any rank skips the step on all: the replicas
// hold the same averages, the tp shards differ.
bool DataParallelEngine::may_step() { return precision_->may_step({groups_.dp().get(), tp_.group()}); }

std::map<std::string, double> DataParallelEngine::step_metrics() {
  auto out = compression_.step_metrics();
  for (const auto& [key, value] : precision_->metrics()) out[key] = value;
  return out;
}

std::map<std::string, torch::Tensor> DataParallelEngine::checkpoint_state() {
  auto out = compression_.checkpoint_state();
  for (const auto& [key, value] : precision_->state()) out[key] = value;
  return out;
}

void DataParallelEngine::load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) {
  compression_.load_checkpoint_state(state);
  precision_->load_state(state);
}

// Replicas hold whole gradients; tp shards' squares are summed over tp.
SumAcross DataParallelEngine::grad_norm_across() {
  if (tp_.size() == 1) return nullptr;
  return [this](double local) {
    return parallel::sum_squares_across(local, tp_.norm_entries(named_parameters()), {nullptr, tp_.group()});
  };
}

// The replicas hold the same averaged gradients after DDP (PowerSGD's
// decompressed average too), so each reads 1/dp of them and the sums add
// over dp: at dp = 2 a replica's one thread reads half the gradients. 1-bit
// Adam's compressed steps leave each rank its own gradient: each reads all.
double DataParallelEngine::grad_norm() {
  const bool replicated = options_.compression.kind != CompressionKind::kOneBitAdam;
  return std::sqrt(
      parallel::sum_squares_of(tp_.norm_entries(named_parameters()),
                               {nullptr, tp_.group(), nullptr, replicated ? groups_.dp().get() : nullptr}));
}

std::map<std::string, torch::Tensor> DataParallelEngine::full_parameters() {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, p] : named_parameters()) out[name] = tp_.whole(name, p.detach());
  return out;
}

void DataParallelEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : named_parameters()) p.copy_(tp_.local_part(tensors, name, p.sizes()));
  precision_->copy_to_model();
}

std::optional<std::vector<formats::Piece>> DataParallelEngine::checkpoint_pieces(const optim::Optimizer& optimizer) {
  parallel::CheckpointPieces out(tp_, groups_.coords().dp, groups_.layout().dp, groups_.world()->rank());
  for (const auto& [name, p] : named_parameters()) out.add_parameter(name, p);
  out.add_optimizer_state(optimizer.local_state());
  return out.take();
}

formats::ShardPlan DataParallelEngine::parameters_to_load() {
  formats::ShardPlan plan;
  for (const auto& [name, p] : named_parameters()) plan[name] = parallel::tp_region(tp_, name);
  return plan;
}

int64_t DataParallelEngine::parameter_count() {
  int64_t n = 0;
  for (const auto& [name, p] : named_parameters()) n += tp_.whole_numel(name, p.numel());
  return n;
}

std::unique_ptr<optim::Optimizer> DataParallelEngine::build_optimizer(const optim::OptimizerOptions& options) {
  if (auto onebit = compression_.make_optimizer(options, named_parameters(), *ddp_)) return onebit;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, p] : named_parameters()) shapes[name] = p.sizes().vec();
  auto inner = tp_.with_whole_state(optim::make_optimizer(options, named_parameters()), std::move(shapes));
  return precision_->wrap(std::move(inner), [this] { return may_step(); });
}

std::string DataParallelEngine::describe() {
  std::string components = tp_.describe();
  const std::string compressor = compression_.describe();
  if (!compressor.empty()) components = components.empty() ? compressor : components + "; " + compressor;
  char line[160];
  std::snprintf(line, sizeof line,
                "data parallel: %d replicas x %d micro-batch(es), %zu DDP bucket(s) of <= %g MiB%s%s",
                groups_.layout().dp, options_.microbatches, ddp_->buckets().size(), options_.bucket_mb,
                precision_->describe().c_str(),
                options_.reduce_dtype != torch::kFloat
                    ? (", " + mixed_precision::precision_name(options_.reduce_dtype) + " gradient reduction").c_str()
                    : "");
  return components.empty() ? std::string(line) : components + "; " + line;
}

}  // namespace paratorch::parallel
