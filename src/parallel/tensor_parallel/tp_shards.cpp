// src/parallel/tensor_parallel/tp_shards.cpp — see tp_shards.h.
#include "parallel/tensor_parallel/tp_shards.h"

#include "parallel/tensor_parallel/tensor_parallel_optimizer.h"
#include "tensor_parallel/full_tensors.h"
#include <paratorch/errors.h>

namespace paratorch::parallel {

TpShards::TpShards(std::map<std::string, tensor_parallel::ShardSpec> specs, std::shared_ptr<Communicator> tp)
    : specs_(std::move(specs)), tp_(std::move(tp)) {
  if (!tp_) throw UsageError("paratorch: TpShards needs a tp group (a group of one rank when nothing is split)");
}

const tensor_parallel::ShardSpec& TpShards::spec(const std::string& name) const {
  auto it = specs_.find(name);
  if (it == specs_.end())
    throw RuntimeFailure("paratorch: no shard spec for parameter '" + name +
                         "'; the model's shard_specs() must list every parameter");
  return it->second;
}

std::vector<torch::Tensor> TpShards::partial_gradients(const optim::NamedTensors& params) const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, p] : params)
    if (spec(name).partial_grad && p.grad().defined()) out.push_back(p.grad());
  return out;
}

std::vector<NormEntry> TpShards::norm_entries(const optim::NamedTensors& params,
                                              const std::set<std::string>& tied_copies) const {
  std::vector<NormEntry> out;
  for (const auto& [name, p] : params) out.push_back({p.grad(), spec(name), tied_copies.count(name) > 0});
  return out;
}

torch::Tensor TpShards::whole(const std::string& name, const torch::Tensor& shard) const {
  return tensor_parallel::gather_full(shard, spec(name), *tp_);
}

std::map<std::string, torch::Tensor> TpShards::whole(std::map<std::string, torch::Tensor> shards) const {
  for (auto& [name, t] : shards) t = whole(name, t);
  return shards;
}

torch::Tensor TpShards::local_part(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                                   torch::IntArrayRef shard_shape) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw RuntimeFailure("paratorch: checkpoint has no tensor '" + name + "' for this model");
  const auto& s = spec(name);
  const auto full_shape = s.full_shape(shard_shape);
  // A sharded checkpoint read for this rank hands over the shard itself.
  if (s.sharded() && it->second.sizes() == shard_shape) return it->second;
  if (it->second.sizes() != torch::IntArrayRef(full_shape))
    throw RuntimeFailure("paratorch: checkpoint tensor '" + name + "' has shape " + c10::str(it->second.sizes()) +
                         " but the model needs " + c10::str(full_shape));
  return s.sharded() ? s.slice(it->second) : it->second;
}

int64_t TpShards::whole_numel(const std::string& name, int64_t shard_numel) const {
  return shard_numel * (spec(name).sharded() ? size() : 1);
}

std::unique_ptr<optim::Optimizer> TpShards::with_whole_state(
    std::unique_ptr<optim::Optimizer> inner, std::map<std::string, std::vector<int64_t>> shard_shapes) const {
  return tensor_parallel::with_whole_tp_state(std::move(inner), specs_, std::move(shard_shapes), tp_);
}

std::string TpShards::describe() const {
  if (size() == 1) return "";
  bool sequence_parallel = false;
  for (const auto& [name, s] : specs_) sequence_parallel = sequence_parallel || s.partial_grad;
  return "tensor parallel: tp=" + std::to_string(size()) + (sequence_parallel ? " with sequence parallelism" : "");
}

}  // namespace paratorch::parallel
