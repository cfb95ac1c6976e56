// src/parallel/engine.cpp — see engine.h: the batch slicing every engine shares, and
// the default gradient norm.
#include "parallel/engine.h"

#include "report/trace.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

namespace paratorch::parallel {
namespace {

// The replica-th contiguous slice of `ids`, as DistributedSampler cuts a
// global batch (sampler.h); empty for replica < 0.
std::vector<int64_t> replica_slice(const std::vector<int64_t>& ids, const BatchShare& s, const char* what) {
  if (s.replica < 0) return {};
  const auto pieces = static_cast<size_t>(s.replicas) * static_cast<size_t>(s.microbatches);
  if (s.replicas < 1 || s.microbatches < 1 || ids.empty() || ids.size() % pieces != 0)
    throw UsageError("paratorch: a " + std::string(what) + " batch of " + std::to_string(ids.size()) +
                     " samples does not divide into " + std::to_string(s.replicas) + " replica(s) x " +
                     std::to_string(s.microbatches) + " micro-batch(es); use a batch size divisible by " +
                     std::to_string(pieces));
  return DistributedSampler::share_of(ids, s.replica, s.replicas);  // the sampler's rule
}

}  // namespace

double Engine::grad_norm() {
  std::vector<torch::Tensor> tensors;
  for (auto& [name, p] : named_parameters()) tensors.push_back(p);
  return global_grad_norm(tensors, grad_norm_across());
}

std::vector<models::Batch> local_microbatches(const Engine& engine, const data::Dataset& dataset,
                                              const std::vector<int64_t>& global_ids) {
  const BatchShare share = engine.batch_share();
  const auto mine = replica_slice(global_ids, share, "global");
  std::vector<models::Batch> out;
  if (mine.empty()) return out;
  report::Tracer::Span span("data", "data");
  const size_t per = mine.size() / static_cast<size_t>(share.microbatches);
  for (size_t k = 0; k < static_cast<size_t>(share.microbatches); ++k)
    out.push_back(dataset.train_batch(std::vector<int64_t>(mine.begin() + static_cast<std::ptrdiff_t>(k * per),
                                                           mine.begin() + static_cast<std::ptrdiff_t>((k + 1) * per))));
  return out;
}

models::Batch local_validation_batch(const Engine& engine, const data::Dataset& dataset,
                                     const std::vector<int64_t>& global_ids) {
  const auto mine = replica_slice(global_ids, engine.validation_share(), "validation");
  return mine.empty() ? models::Batch{} : dataset.validation_batch(mine);
}

EvalResult score_output(models::BundledModel& model, const torch::Tensor& output, const models::Batch& batch) {
  EvalResult r;
  r.loss = model.criterion(output.to(torch::kFloat), batch).item<double>();
  if (batch.target.scalar_type() == torch::kLong && batch.target.dim() == 1)
    r.accuracy = (output.argmax(-1) == batch.target).to(torch::kDouble).mean().item<double>();
  return r;
}

}  // namespace paratorch::parallel
