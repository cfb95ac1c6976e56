// src/parallel/async/torch_shard_optimizer.cpp — the user's torch::optim
// optimizer stepping a server's shard: its param groups re-pointed at the
// shard's rows (per-group options such as "no weight decay on biases"
// carry over), or one the user's factory builds over them. Its state is
// read and written by piece key, so a checkpoint joins the servers' rows
// (ParameterServer::training_state) and any layout's cuts back into them.
#include "parallel/async/torch_shard_optimizer.h"

#include "optim/lr_schedule.h"
#include "parallel/zero/optimizer_state.h"
#include <paratorch/errors.h>

#include <map>

namespace paratorch::async {
namespace {

using NamedShard = std::vector<std::pair<std::string, torch::Tensor>>;

class TorchShardOptimizer : public ShardOptimizer {
 public:
  TorchShardOptimizer(std::shared_ptr<torch::optim::Optimizer> optimizer, std::function<double(int64_t)> lr_at,
                      NamedShard shard)
      : optimizer_(std::move(optimizer)), lr_at_(std::move(lr_at)), shard_(std::move(shard)) {}
  void step(int64_t step) override {
    if (lr_at_) optim::set_learning_rate(*optimizer_, lr_at_(step));
    optimizer_->step();
    ++steps_;
  }
  int64_t steps_taken() const override { return steps_; }
  std::vector<std::string> state_kinds() const override { return zero::state_kinds(*optimizer_); }

  // libtorch keys its state by tensor: here each piece's by its key,
  // "<key>.<kind>" and "<key>.step" (the optimizer's own count for it).
  std::map<std::string, torch::Tensor> state_tensors() const override {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [key, leaf] : shard_) zero::read_named_state(*optimizer_, leaf, key, out);
    out["step"] = torch::tensor({steps_}, torch::kLong);
    return out;
  }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    for (const auto& [key, leaf] : shard_) zero::write_named_state(*optimizer_, leaf, key, state);
    if (auto it = state.find("step"); it != state.end()) steps_ = it->second.item<int64_t>();
  }

 private:
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::function<double(int64_t)> lr_at_;
  NamedShard shard_;  // the leaves it steps, by piece key
  int64_t steps_ = 0;
};

std::vector<torch::Tensor> tensors_of(const std::vector<std::pair<std::string, torch::Tensor>>& shard) {
  std::vector<torch::Tensor> out;
  for (const auto& item : shard) out.push_back(item.second);
  return out;
}

}  // namespace

ShardOptimizerFactory repointed_optimizer(std::shared_ptr<torch::optim::Optimizer> optimizer,
                                          std::vector<std::pair<std::string, torch::Tensor>> module_params,
                                          std::function<double(int64_t)> lr_at) {
  if (!optimizer) throw UsageError("paratorch: ParameterServer got a null optimizer; pass one built over module->parameters()");
  if (optimizer->state().size() != 0)
    throw UsageError("paratorch: the ParameterServer's optimizer has already been stepped; pass a fresh one "
                     "(its state would belong to the full parameters, not to a server's rows)");
  std::map<const void*, size_t> group_of;  // parameter -> param group
  for (size_t g = 0; g < optimizer->param_groups().size(); ++g)
    for (const auto& p : optimizer->param_groups()[g].params()) group_of[p.unsafeGetTensorImpl()] = g;
  std::vector<size_t> groups;
  for (const auto& [name, p] : module_params) {
    auto it = group_of.find(p.unsafeGetTensorImpl());
    if (it == group_of.end())
      throw UsageError("paratorch: parameter '" + name + "' is in no param group of the ParameterServer's optimizer; "
                       "build the optimizer over module->parameters()");
    groups.push_back(it->second);
  }
  return [optimizer, groups, lr_at](const std::vector<std::pair<std::string, torch::Tensor>>& shard,
                                    const std::vector<Piece>& pieces) {
    for (auto& group : optimizer->param_groups()) group.params().clear();
    for (size_t i = 0; i < pieces.size(); ++i) optimizer->param_groups()[groups[pieces[i].param]].params().push_back(shard[i].second);
    return std::unique_ptr<ShardOptimizer>(new TorchShardOptimizer(optimizer, lr_at, shard));
  };
}

ShardOptimizerFactory built_optimizer(ParameterServer::OptimizerFactory make, std::function<double(int64_t)> lr_at) {
  if (!make) throw UsageError("paratorch: ParameterServer got an empty OptimizerFactory");
  return [make, lr_at](const std::vector<std::pair<std::string, torch::Tensor>>& shard, const std::vector<Piece>&) {
    auto optimizer = make(tensors_of(shard));
    if (!optimizer) throw UsageError("paratorch: the ParameterServer's OptimizerFactory returned no optimizer");
    return std::unique_ptr<ShardOptimizer>(new TorchShardOptimizer(optimizer, lr_at, shard));
  };
}

}  // namespace paratorch::async
