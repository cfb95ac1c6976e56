// src/parallel/grad_clip_public.cpp — paratorch/grad_clip.h over the
// trainer's own norm (grad_norm.h: which pieces cross which group) and
// clipping rule (grad_clip.h).
#include <paratorch/errors.h>
#include <paratorch/grad_clip.h>
#include <paratorch/tensor_parallel.h>

#include "parallel/grad_clip.h"
#include "parallel/grad_norm.h"

#include <cmath>
#include <set>
#include <sstream>

namespace paratorch {
namespace {

bool spans(const std::shared_ptr<Communicator>& group) { return group && group->size() > 1; }

// Each tensor once (by identity), with its tp split.
std::vector<parallel::NormEntry> unique_entries(const std::vector<torch::Tensor>& params,
                                                const std::vector<tensor_parallel::ShardSpec>& specs) {
  std::vector<parallel::NormEntry> out;
  std::set<const void*> seen;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!seen.insert(params[i].unsafeGetTensorImpl()).second) continue;
    out.push_back({params[i].grad(), specs.empty() ? tensor_parallel::ShardSpec{} : specs[i], false});
  }
  return out;
}

parallel::NormGroups raw(const GradNormGroups& groups) {
  return {groups.shards.get(), groups.tp.get(), groups.pp.get(), groups.replicas.get()};
}

double norm_of(const std::vector<parallel::NormEntry>& entries, const parallel::NormGroups& groups) {
  return std::sqrt(parallel::sum_squares_of(entries, groups));
}

std::vector<parallel::NormEntry> module_entries(const torch::nn::Module& module) {
  const auto specs = tensor_parallel::shard_specs(module);
  std::vector<torch::Tensor> params;
  std::vector<tensor_parallel::ShardSpec> split;
  for (const auto& p : module.named_parameters()) {
    params.push_back(p.value());
    auto it = specs.find(p.key());
    split.push_back(it == specs.end() ? tensor_parallel::ShardSpec{} : it->second);
  }
  return unique_entries(params, split);
}

void require_no_tp(const GradNormGroups& groups) {
  if (spans(groups.tp))
    throw UsageError(
        "paratorch: GradNormGroups::tp is set, but a parameter list does not say which parameters are tp slices; "
        "pass the module instead (clip_grad_norm(module, ...), which reads shard_specs)");
}

}  // namespace

namespace parallel {

double clip_norm_entries(const std::vector<NormEntry>& entries, double max_norm, const NormGroups& groups) {
  if (!(max_norm > 0)) {
    std::ostringstream what;
    what << "paratorch: clip_grad_norm's max_norm = " << max_norm
         << " must be > 0 (grad_norm() measures the norm without clipping)";
    throw UsageError(what.str());
  }
  const double norm = norm_of(entries, groups);
  const double coefficient = clip_coefficient(norm, max_norm);
  if (coefficient < 1.0) {
    torch::NoGradGuard no_grad;
    for (const auto& e : entries)
      if (e.grad.defined()) e.grad.mul_(coefficient);
  }
  return norm;
}

}  // namespace parallel

double grad_norm(const std::vector<torch::Tensor>& params, const GradNormGroups& groups) {
  require_no_tp(groups);
  return norm_of(unique_entries(params, {}), raw(groups));
}

double grad_norm(const torch::nn::Module& module, const GradNormGroups& groups) {
  return norm_of(module_entries(module), raw(groups));
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm, const GradNormGroups& groups) {
  require_no_tp(groups);
  return parallel::clip_norm_entries(unique_entries(params, {}), max_norm, raw(groups));
}

double clip_grad_norm(const torch::nn::Module& module, double max_norm, const GradNormGroups& groups) {
  return parallel::clip_norm_entries(module_entries(module), max_norm, raw(groups));
}

}  // namespace paratorch
