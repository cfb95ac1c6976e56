// src/tensor_parallel/full_tensors.cpp — see full_tensors.h.
#include "tensor_parallel/full_tensors.h"

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
