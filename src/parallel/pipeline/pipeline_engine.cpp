// src/parallel/pipeline/pipeline_engine.cpp — see pipeline_engine.h.
#include "parallel/pipeline/pipeline_engine.h"

#include "parallel/ddp/reducer.h"
#include "parallel/pipeline/options.h"
#include "parallel/mixed_precision/precision.h"

#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <cstdio>

namespace paratorch::pipeline {

void PipelineEngineOptions::validate(const Layout& layout) const {
  const std::string name = parallel::pipeline::schedule_name(schedule);
  pipeline::validate_schedule(name, pipeline::shape_for(name, layout.pp, microbatches, virtual_stages));
  if (activation_checkpointing && pipeline::splits_backward(name))
    throw UsageError("paratorch: PipelineEngineOptions::activation_checkpointing does not combine with schedule \"" +
                     name + "\" yet; turn it off or use 1f1b");
  DistributedSampler check(global_batch, 0, layout.dp);  // UsageError when dp does not divide the batch
  if (check.local_batch() % microbatches != 0)
    throw UsageError("paratorch: PipelineEngineOptions::microbatches = " + std::to_string(microbatches) +
                     " must divide the per-replica batch " + std::to_string(check.local_batch()) +
                     " (global_batch " + std::to_string(global_batch) + " / dp " + std::to_string(layout.dp) + ")");
  partition.validate();
  mixed_precision::require_training_dtype(compute_dtype, "PipelineEngineOptions::compute_dtype");
  mixed_precision::require_training_dtype(reduce_dtype, "PipelineEngineOptions::reduce_dtype");
  if (!(bucket_mb > 0)) throw UsageError("paratorch: PipelineEngineOptions::bucket_mb must be > 0");
  scaler.validate();
}

PipelineEngine::PipelineEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                               const data::Dataset& dataset, torch::Device device, PipelineEngineOptions options)
    : groups_(groups),
      model_(std::move(model)),
      dataset_(dataset),
      device_(device),
      options_(std::move(options)),
      tp_(model_->shard_specs(), groups.tp()) {
  const Layout& L = groups_.layout();
  options_.validate(L);
  const std::string schedule = parallel::pipeline::schedule_name(options_.schedule);
  const pipeline::PipelineShape shape = pipeline::shape_for(schedule, L.pp, options_.microbatches, options_.virtual_stages);
  options_.virtual_stages = shape.virtual_stages;  // zb-v's own 2
  model_->initialize(options_.seed);
  model_->to(device_);
  auto blocks = model_->blocks();
  pipeline::check_block_count(static_cast<int>(blocks.size()), L.pp, options_.virtual_stages,
                              parallel::pipeline::schedule_name(options_.schedule),
                              options_.model_name);
  for (const auto& item : model_->named_parameters(true)) {
    order_.push_back(item.key());
    shard_shapes_[item.key()] = item.value().sizes().vec();
    shapes_[item.key()] = tp_.spec(item.key()).full_shape(item.value().sizes());
    dtypes_[item.key()] = item.value().scalar_type();
    int64_t numel = 1;
    for (int64_t d : shapes_[item.key()]) numel *= d;
    parameter_count_ += numel;
  }
  choose_partition(blocks);
  std::vector<pipeline::StageChunk> chunks;
  for (int c = 0; c < shape.virtual_stages; ++c) {
    const int s = shape.model_stage(groups_.coords().pp, c);
    pipeline::StageChunk chunk{s, {}};
    for (int i = partition_.first[static_cast<size_t>(s)]; i < partition_.first[static_cast<size_t>(s) + 1]; ++i)
      chunk.blocks.push_back(blocks[static_cast<size_t>(i)]);
    chunks.push_back(std::move(chunk));
  }
  auto boundaries = boundary_specs(blocks);
  keep_own_parameters(blocks, shape);
  set_precision(boundaries);
  executor_ = std::make_unique<pipeline::Executor>(groups_.pp(), pipeline::make_schedule(schedule, shape),
                                                   chunks, std::move(boundaries), device_,
                                                   options_.activation_checkpointing);
  if (L.dp > 1) overlap_dp_reduction(chunks);
  if (groups_.world()->rank() == 0) {
    std::printf("paratorch: pipeline %s\n", partition_.report(blocks).c_str());
    std::fflush(stdout);
  }
}

// "time" measures on world rank 0 and broadcasts, so every rank cuts the
// model at the same blocks. With tp > 1 the blocks' forward and backward are
// collective over tp, so rank 0's whole tp group (dp = pp = 0) measures
// together; the other ranks wait in the broadcast.
void PipelineEngine::choose_partition(const std::vector<models::ModelBlock>& blocks) {
  const int stages = groups_.layout().pp * options_.virtual_stages;
  std::vector<double> block_ms;
  if (options_.partition.by == PartitionBy::kTime) {
    auto ms = torch::zeros({static_cast<int64_t>(blocks.size())}, torch::kDouble);
    if (groups_.coords().dp == 0 && groups_.coords().pp == 0) {
      DistributedSampler sampler(options_.global_batch, 0, groups_.layout().dp);
      std::vector<int64_t> ids;
      for (int64_t i = 0; i < sampler.local_batch() / options_.microbatches; ++i) ids.push_back(i);
      auto measure_blocks = blocks;
      auto measured = pipeline::measure_block_ms(measure_blocks, dataset_.train_batch(ids).to(device_, dtype_).input);
      for (size_t i = 0; i < measured.size(); ++i) ms[static_cast<int64_t>(i)] = measured[i];
      for (auto& p : model_->parameters()) p.mutable_grad() = torch::Tensor();  // measuring left gradients
    }
    groups_.world()->broadcast(ms, 0);
    for (int64_t i = 0; i < ms.numel(); ++i) block_ms.push_back(ms[i].item<double>());
  }
  partition_ = pipeline::make_partition(options_.partition, *model_, blocks, stages, block_ms);
}

// The activation leaving each stage, from one sample through the whole model
// (identical on every rank: same model, same sample). Dim 0 is the batch.
// With tp > 1 every rank runs it, so the blocks' tp collectives pair up; under
// sequence parallelism the activation is this tp rank's sequence slice,
// which is what crosses the stage boundary.
std::vector<pipeline::BoundarySpec> PipelineEngine::boundary_specs(const std::vector<models::ModelBlock>& blocks) {
  torch::NoGradGuard no_grad;
  std::vector<pipeline::BoundarySpec> out;
  torch::Tensor x = dataset_.train_batch({0}).to(device_, dtype_).input;
  for (int s = 0; s + 1 < partition_.stages(); ++s) {
    for (int i = partition_.first[static_cast<size_t>(s)]; i < partition_.first[static_cast<size_t>(s) + 1]; ++i)
      x = blocks[static_cast<size_t>(i)].forward(x);
    auto shape = x.sizes().vec();
    shape[0] = -1;
    out.push_back({shape, x.scalar_type()});
  }
  return out;
}

// Records which pipeline rank owns each parameter, which this rank holds
// (its chunks' own parameters plus the tied weights they use), and frees
// the others' storage.
void PipelineEngine::keep_own_parameters(const std::vector<models::ModelBlock>& blocks,
                                         const pipeline::PipelineShape& shape) {
  const int pp = groups_.layout().pp, me = groups_.coords().pp;
  auto rank_of_block = [&](size_t i) { return shape.rank_of_stage(partition_.stage_of_block(static_cast<int>(i))); };
  std::set<std::string> mine;
  for (size_t i = 0; i < blocks.size(); ++i)
    for (const auto& name : blocks[i].parameters) {
      owner_[name] = rank_of_block(i);
      if (owner_[name] == me) mine.insert(name);
    }
  for (size_t i = 0; i < blocks.size(); ++i)
    for (const auto& name : blocks[i].shared) {
      const int user = rank_of_block(i);
      if (user == owner_.at(name)) continue;  // one copy suffices
      if (owner_.at(name) != 0 || user != pp - 1)
        throw RuntimeFailure("paratorch: tied parameter " + name + " spans pipeline ranks " +
                             std::to_string(owner_.at(name)) + " and " + std::to_string(user) +
                             "; only the first and last stage may share weights");
      tied_.insert(name);
      if (user == me) mine.insert(name), tied_copies_.insert(name);
    }
  torch::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters(true)) {
    params_[item.key()] = item.value();  // the module's tensor itself: set_data keeps it
    if (mine.count(item.key())) held_.push_back(item.key());
    else item.value().set_data(torch::empty({0}, item.value().options()));
  }
}

// The model was initialized (and the boundaries measured) in fp32; in mixed
// precision it computes in the low precision from here on and the masters
// hold the fp32 values.
void PipelineEngine::set_precision(std::vector<pipeline::BoundarySpec>& boundaries) {
  dtype_ = options_.compute_dtype;
  for (auto& b : boundaries)
    if (c10::isFloatingType(b.dtype)) b.dtype = dtype_;
  mixed_precision::MasterWeights::Named held;
  for (const auto& name : held_) held.emplace_back(name, params_.at(name));
  precision_ = std::make_unique<mixed_precision::MixedPrecision>(
      std::move(held), mixed_precision::MixedPrecisionOptions{dtype_, options_.loss_scaling, options_.scaler});
}

torch::Tensor PipelineEngine::trained(const std::string& name) { return precision_->trained(name, params_.at(name)); }

parallel::BatchShare PipelineEngine::batch_share() const {
  return {groups_.coords().dp, groups_.layout().dp, options_.microbatches};
}

double PipelineEngine::forward_backward(const std::vector<models::Batch>& microbatches) {
  const int m = static_cast<int>(microbatches.size());
  std::vector<models::Batch> micro;
  for (const auto& b : microbatches) micro.push_back(b.to(device_, dtype_));
  // The loss in fp32 from the last stage's output; fp16 scales it by S
  // before backward (and the summed losses are divided by S again).
  auto criterion = [this](const torch::Tensor& out, const models::Batch& b) {
    return model_->criterion(out.to(torch::kFloat), b);
  };
  const double scale = precision_->loss_scale();
  begin_dp_reduction();
  const double local = executor_->run_step(micro, criterion, scale / m) / scale;
  reduce_gradients();
  auto loss = torch::tensor({local}, torch::kDouble);  // non-zero on the last stage only
  groups_.pp()->all_reduce(loss, ReduceOp::kSum);
  groups_.dp()->all_reduce(loss, ReduceOp::kAvg);
  return loss.item<double>();
}

// After the schedule: the reducers averaged what they could during backward
// (in mixed precision into fp32 main gradients, which become the masters'
// .grad, unscaled); what they did not take is averaged here in one flat
// all-reduce (or on it rounded to reduce_precision).
void PipelineEngine::reduce_gradients() {
  torch::NoGradGuard no_grad;
  precision_->finish_gradients();  // every reduction below runs in fp32
  for (const auto& name : held_) {
    auto p = trained(name);
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
  }
  if (groups_.layout().dp > 1) {
    std::vector<torch::Tensor> grads;
    for (const auto& name : not_reduced_by_reducers()) grads.push_back(trained(name).grad());
    average_over_dp(grads);
  }
  // Linear in the gradients, so after the dp average as before it.
  finalize_gradients();  // sequence-parallel partial sums over tp, then tied copies
}

void PipelineEngine::average_over_dp(const std::vector<torch::Tensor>& grads) {
  if (grads.empty()) return;
  std::vector<torch::Tensor> flat_parts;
  for (auto& g : grads) flat_parts.push_back(g.reshape({-1}));
  // One bucket through the hook the overlapped reducers use, so a chunk
  // reduced here rounds (reduce_precision bf16/fp16) exactly as they do.
  GradBucket bucket;
  bucket.buffer = torch::cat(flat_parts);
  bucket.divisor = groups_.dp()->size();
  reduce_in_dtype(options_.reduce_dtype, *groups_.dp())(*groups_.dp(), bucket)->wait();
  const torch::Tensor& flat = bucket.buffer;
  int64_t offset = 0;
  for (auto g : grads) {
    g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
}

parallel::EvalResult PipelineEngine::evaluate(const models::Batch& piece) {
  torch::NoGradGuard no_grad;
  model_->eval();
  auto batch = piece.to(device_, dtype_);
  auto out = executor_->forward_only(batch);
  auto sums = torch::zeros({2}, torch::kDouble);  // loss, accuracy: set on the last stage only
  const bool classifies = batch.target.scalar_type() == torch::kLong && batch.target.dim() == 1;
  if (out.defined()) {
    const parallel::EvalResult mine = parallel::score_output(*model_, out, batch);
    sums[0] = mine.loss, sums[1] = classifies ? mine.accuracy : 0.0;
  }
  groups_.pp()->all_reduce(sums, ReduceOp::kSum);
  groups_.dp()->all_reduce(sums, ReduceOp::kAvg);
  model_->train();
  return {sums[0].item<double>(), classifies ? sums[1].item<double>() : -1.0};
}

int64_t PipelineEngine::local_parameter_count() {
  int64_t n = 0;
  for (const auto& name : held_) {
    int64_t numel = 1;
    for (int64_t d : shard_shapes_.at(name)) numel *= d;
    n += numel;
  }
  return n;
}

optim::NamedTensors PipelineEngine::named_parameters() {
  optim::NamedTensors out;
  for (const auto& name : held_) out.emplace_back(name, trained(name));
  return out;
}

bool PipelineEngine::may_step() {
  return precision_->may_step({groups_.world().get()});  // every stage and replica skips together
}

std::map<std::string, torch::Tensor> PipelineEngine::checkpoint_state() { return precision_->state(); }

void PipelineEngine::load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) {
  precision_->load_state(state);
}

std::map<std::string, double> PipelineEngine::step_metrics() { return precision_->metrics(); }

std::string PipelineEngine::describe() {
  const auto& s = executor_->schedule().shape;
  char line[256];
  const int tp = tp_.size();
  std::snprintf(line, sizeof line,
                "pipeline: %d stages x %d replica(s)%s, schedule %s, %d micro-batch(es)%s, partition by %s%s%s",
                s.stages, groups_.layout().dp, tp > 1 ? (", tensor parallel tp=" + std::to_string(tp)).c_str() : "",
                parallel::pipeline::schedule_name(options_.schedule).c_str(), s.microbatches,
                s.virtual_stages > 1 ? (", " + std::to_string(s.virtual_stages) + " chunks/rank").c_str() : "",
                options_.partition.text().c_str(),
                options_.activation_checkpointing ? ", activation checkpointing" : "", precision_->describe().c_str());
  return line;
}

}  // namespace paratorch::pipeline
