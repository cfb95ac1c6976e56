// src/parallel/async/full_parameters.cpp — assemble_full and gather_full
// (ps_server.h): whole parameters from the servers' pieces, on every rank.
#include "parallel/async/ps_server.h"

namespace paratorch::async {

// Summing zeros and one owner's rows is exact: every element is one value plus zeros.
std::map<std::string, torch::Tensor> assemble_full(Communicator& group, const ShardPlan& plan,
                                                   const std::map<std::string, torch::Tensor>& mine,
                                                   const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, value] : params)
    out[name] = torch::zeros(value.sizes(), torch::TensorOptions().dtype(torch::kFloat));
  if (group.rank() < plan.servers)
    for (const auto& piece : plan.pieces_of(group.rank())) piece_view(out[piece.name], piece).copy_(mine.at(piece.key));
  for (auto& [name, t] : out) group.all_reduce(t, ReduceOp::kSum);
  return out;
}

std::map<std::string, torch::Tensor> gather_full(Communicator& group, const ShardPlan& plan, const Server* server,
                                                 const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  return assemble_full(group, plan, server ? server->shard() : std::map<std::string, torch::Tensor>{}, params);
}

}  // namespace paratorch::async
