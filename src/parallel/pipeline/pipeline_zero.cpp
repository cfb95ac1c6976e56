// src/parallel/pipeline/pipeline_zero.cpp — see pipeline_zero.h (PipelineEngine::build_optimizer,
// in pipeline_state.cpp, picks it when zero = 1).
#include "parallel/pipeline/pipeline_zero.h"

#include "parallel/zero/flat_shards.h"
#include "parallel/zero/sharded_optimizer.h"
#include <paratorch/errors.h>

namespace paratorch::pipeline {
namespace {

// The stage's parameters become views of zero::FlatShards' buffers (the
// flat buffers of every ZeRO-1 in the project), with no reducer: the
// pipeline has averaged (and the trainer clipped) the gradients before the
// update, so only this rank's pieces of them are copied into the gradient
// shard. fp32 masters are views of the parameters, so what
// load_full_parameters writes into the parameters is what the next step starts from.
class Zero1Optimizer final : public optim::Optimizer {
 public:
  Zero1Optimizer(const optim::OptimizerOptions& options, const optim::NamedTensors& params,
                 std::shared_ptr<Communicator> dp) {
    std::vector<torch::Tensor> tensors;
    std::vector<std::string> names;
    for (const auto& [name, p] : params) names.push_back(name), tensors.push_back(p);
    zero::FlatShardsOptions flat;
    flat.stage = 1;
    flat.reduce_gradients = false;
    flat.param_dtype = tensors.front().scalar_type();
    shards_ = std::make_unique<zero::FlatShards>(std::move(tensors), std::move(names), dp, flat);
    std::vector<zero::ShardUnit> units;
    for (const auto& b : shards_->buffers()) units.push_back({b.layout.get(), b.master, b.grad});
    inner_ = std::make_unique<zero::ShardedOptimizer>(
        options, units, zero::make_pieces(units), dp->size() > 1 ? dp : nullptr, [this] { return take_gradients(); },
        [this] { shards_->publish(); });
  }

  void step(double lr, double grad_scale = 1.0) override {
    inner_->step(lr, grad_scale);
    steps_ = inner_->steps_taken();
  }
  std::map<std::string, torch::Tensor> state_tensors() const override { return inner_->state_tensors(); }
  std::vector<optim::LocalState> local_state() const override { return inner_->local_state(); }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    inner_->load_state_tensors(state);
    steps_ = inner_->steps_taken();
  }

 private:
  // Returns true: the update always runs (the fp16 skip is the precision wrapper's, around this one).
  bool take_gradients() {
    shards_->finalize();
    shards_->before_update();
    return true;
  }

  std::unique_ptr<zero::FlatShards> shards_;
  std::unique_ptr<zero::ShardedOptimizer> inner_;
};

}  // namespace

std::unique_ptr<optim::Optimizer> make_zero1_optimizer(const optim::OptimizerOptions& options,
                                                       optim::NamedTensors params, std::shared_ptr<Communicator> dp) {
  if (params.empty()) return optim::make_optimizer(options, std::move(params));
  if (!dp) throw UsageError("paratorch: make_zero1_optimizer needs the stage's dp group (a group of one for dp = 1)");
  return std::make_unique<Zero1Optimizer>(options, params, std::move(dp));
}

}  // namespace paratorch::pipeline
