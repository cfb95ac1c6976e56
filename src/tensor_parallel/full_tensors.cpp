// src/tensor_parallel/full_tensors.cpp — see full_tensors.h.
#include "tensor_parallel/full_tensors.h"

#include "report/trace.h"
#include "tensor_parallel/mappings.h"

namespace paratorch::tensor_parallel {

torch::Tensor gather_full(const torch::Tensor& shard, const ShardSpec& spec, Communicator& tp) {
  auto mine = shard.detach().cpu().contiguous();
  if (!spec.sharded()) return mine.clone();
  std::vector<int64_t> shape{tp.size()};
  shape.insert(shape.end(), mine.sizes().begin(), mine.sizes().end());
  auto all = torch::empty(shape, mine.options());
  tp.all_gather(all, mine);
  return spec.assemble(all.unbind(0));
}

double tp_squared_norm(double sharded_sq, double replicated_sq, Communicator& tp) {
  auto sharded = torch::tensor({sharded_sq}, torch::kDouble);
  if (tp.size() > 1) tp.all_reduce(sharded, ReduceOp::kSum);
  return sharded.item<double>() + replicated_sq;
}

void sum_partial_gradients(const std::vector<torch::Tensor>& partial, Communicator& tp) {
  if (partial.empty() || tp.size() == 1) return;
  report::Tracer::Span span("tp.partial_grads", "tp");
  std::vector<torch::Tensor> flats;
  for (const auto& g : partial) flats.push_back(g.reshape({-1}));
  auto flat = torch::cat(flats);
  timed_all_reduce(flat, tp, ReduceOp::kSum);
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (auto g : partial) {
    g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
}

const ShardSpec* spec_of_state(const std::string& state_name, torch::IntArrayRef sizes, bool whole,
                               const std::map<std::string, ShardSpec>& specs,
                               const std::map<std::string, std::vector<int64_t>>& shard_shapes) {
  const auto dot = state_name.rfind('.');
  if (dot == std::string::npos) return nullptr;
  auto it = specs.find(state_name.substr(0, dot));
  if (it == specs.end() || !it->second.sharded()) return nullptr;
  const auto& shard = shard_shapes.at(it->first);
  const auto expected = whole ? it->second.full_shape(shard) : shard;
  return sizes == torch::IntArrayRef(expected) ? &it->second : nullptr;
}

}  // namespace paratorch::tensor_parallel
