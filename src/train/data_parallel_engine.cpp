// src/train/data_parallel_engine.cpp — see data_parallel_engine.h.
#include "train/data_parallel_engine.h"

#include "report/trace.h"
#include <paratorch/errors.h>

namespace paratorch::train {

void DataParallelOptions::validate(int dp) const {
  DistributedSampler check(global_batch, 0, dp);
  if (microbatches < 1 || check.local_batch() % microbatches != 0)
    throw UsageError("paratorch: [parallel] microbatches = " + std::to_string(microbatches) +
                     " must divide the per-replica batch " + std::to_string(check.local_batch()) +
                     " (global_batch " + std::to_string(global_batch) + " / dp " + std::to_string(dp) + ")");
}

DataParallelEngine::DataParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                                       const data::Dataset& dataset, torch::Device device,
                                       DataParallelOptions options)
    : groups_(groups), model_(std::move(model)), dataset_(dataset), device_(device), options_(options) {
  options_.validate(groups_.layout().dp);
  model_->initialize(options_.seed);
  model_->to(device_);
  DDPOptions ddp_options;
  ddp_options.bucket_mb = options_.bucket_mb;
  ddp_ = std::make_unique<DistributedDataParallel>(model_, groups_.dp(), ddp_options);
}

std::vector<int64_t> DataParallelEngine::my_slice(const std::vector<int64_t>& ids) const {
  const int dp = groups_.layout().dp, r = groups_.coords().dp;
  const size_t n = ids.size() / static_cast<size_t>(dp);
  return std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(r * n),
                              ids.begin() + static_cast<std::ptrdiff_t>((r + 1) * n));
}

models::Batch DataParallelEngine::to_device(models::Batch b) const {
  b.input = b.input.to(device_);
  b.target = b.target.to(device_);
  return b;
}

double DataParallelEngine::forward_backward(const std::vector<int64_t>& ids) {
  const auto mine = my_slice(ids);
  const int m = options_.microbatches;
  const size_t per = mine.size() / static_cast<size_t>(m);
  double local = 0;
  for (int k = 0; k < m; ++k) {
    std::vector<int64_t> part(mine.begin() + static_cast<std::ptrdiff_t>(k * per),
                              mine.begin() + static_cast<std::ptrdiff_t>((k + 1) * per));
    models::Batch batch;
    {
      report::Tracer::Span span("data", "data");
      batch = to_device(dataset_.train_batch(part));
    }
    torch::Tensor loss;
    {
      report::Tracer::Span span("forward", "compute");
      loss = model_->loss(batch) / m;
    }
    report::Tracer::Span span("backward", "compute");
    if (k + 1 < m) {
      auto no_sync = ddp_->no_sync();  // accumulate; reduce with the last piece
      loss.backward();
    } else {
      loss.backward();  // returns with gradients averaged over replicas
    }
    local += loss.item<double>();
  }
  auto global = torch::tensor({local}, torch::kDouble);
  groups_.dp()->all_reduce(global, ReduceOp::kAvg);
  return global.item<double>();
}

EvalResult DataParallelEngine::evaluate(const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  model_->eval();
  auto batch = to_device(dataset_.validation_batch(my_slice(ids)));
  auto sums = torch::zeros({2}, torch::kDouble);  // loss, correct predictions
  sums[0] = model_->loss(batch).item<double>();
  const bool classifies = batch.target.scalar_type() == torch::kLong && batch.target.dim() == 1;
  if (classifies)
    sums[1] = (model_->forward(batch.input).argmax(-1) == batch.target).to(torch::kDouble).mean().item<double>();
  groups_.dp()->all_reduce(sums, ReduceOp::kAvg);
  model_->train();
  return {sums[0].item<double>(), classifies ? sums[1].item<double>() : -1.0};
}

NamedTensors DataParallelEngine::named_parameters() {
  NamedTensors out;
  for (const auto& item : model_->named_parameters(true)) out.emplace_back(item.key(), item.value());
  return out;
}

std::map<std::string, torch::Tensor> DataParallelEngine::full_parameters() {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model_->named_parameters(true)) out[item.key()] = item.value().detach().cpu();
  return out;
}

void DataParallelEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters(true)) {
    auto it = tensors.find(item.key());
    if (it == tensors.end())
      throw RuntimeFailure("paratorch: checkpoint has no tensor '" + item.key() + "' for this model");
    if (it->second.sizes() != item.value().sizes())
      throw RuntimeFailure("paratorch: checkpoint tensor '" + item.key() + "' has shape " +
                           c10::str(it->second.sizes()) + " but the model needs " + c10::str(item.value().sizes()));
    item.value().copy_(it->second);
  }
}

int64_t DataParallelEngine::parameter_count() {
  int64_t n = 0;
  for (const auto& p : model_->parameters()) n += p.numel();
  return n;
}

std::string DataParallelEngine::describe() {
  char line[160];
  std::snprintf(line, sizeof line, "data parallel: %d replicas x %d micro-batch(es), %zu DDP bucket(s) of <= %g MiB",
                groups_.layout().dp, options_.microbatches, ddp_->buckets().size(), options_.bucket_mb);
  return line;
}

}  // namespace paratorch::train
