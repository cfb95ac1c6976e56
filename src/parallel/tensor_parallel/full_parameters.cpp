// src/parallel/tensor_parallel/full_parameters.cpp — a tensor-parallel
// module's parameters by full name: how each is split (shard_specs), the
// whole tensors gathered back (full_parameters), and whole tensors loaded
// into the shards (load_full_parameters). The per-tensor conversions are
// ShardSpec's and gather_full's (src/tensor_parallel/).
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel.h>

#include "tensor_parallel/full_tensors.h"

#include <sstream>

namespace paratorch::tensor_parallel {
namespace {

std::string shape_string(torch::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

}  // namespace

std::map<std::string, ShardSpec> shard_specs(const torch::nn::Module& module) {
  std::map<std::string, ShardSpec> out;
  auto add = [&](const std::string& prefix, const torch::nn::Module& m) {
    const auto* sharded = dynamic_cast<const ShardedModule*>(&m);
    for (const auto& p : m.named_parameters(/*recurse=*/false))
      out[prefix.empty() ? p.key() : prefix + "." + p.key()] = sharded ? sharded->shard_spec(p.key()) : ShardSpec{};
  };
  add("", module);  // named_modules(include_self) would need shared_from_this
  for (const auto& m : module.named_modules("", /*include_self=*/false)) add(m.key(), *m.value());
  return out;
}

std::map<std::string, torch::Tensor> full_parameters(const torch::nn::Module& module, Communicator& tp_group) {
  std::map<std::string, torch::Tensor> shards;
  for (const auto& p : module.named_parameters()) shards[p.key()] = p.value();
  return full_parameters(shards, shard_specs(module), tp_group);
}

std::map<std::string, torch::Tensor> full_parameters(const std::map<std::string, torch::Tensor>& shards,
                                                     const std::map<std::string, ShardSpec>& specs,
                                                     Communicator& tp_group) {
  std::map<std::string, torch::Tensor> out;
  // A std::map's order is the names', the same on every rank of the group,
  // so the gathers line up across it.
  for (const auto& [name, shard] : shards) {
    const auto spec = specs.find(name);
    if (spec == specs.end())
      throw UsageError("paratorch: tensor_parallel::full_parameters: argument 'specs' has no ShardSpec for \"" +
                       name + "\"; pass shard_specs() of the parallelized module");
    out[name] = gather_full(shard, spec->second, tp_group);
  }
  return out;
}

void load_full_parameters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& full) {
  const auto specs = shard_specs(module);
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const auto it = full.find(p.key());
    if (it == full.end())
      throw UsageError("paratorch: load_full_parameters: argument 'full' has no tensor for parameter \"" + p.key() + "\"");
    const auto& spec = specs.at(p.key());
    const auto want = spec.full_shape(p.value().sizes());
    if (it->second.sizes() != torch::IntArrayRef(want))
      throw UsageError("paratorch: load_full_parameters: argument 'full' holds \"" + p.key() + "\" as " +
                       shape_string(it->second.sizes()) + "; its whole shape is " + shape_string(want));
    p.value().copy_(spec.slice(it->second));
  }
}

}  // namespace paratorch::tensor_parallel
