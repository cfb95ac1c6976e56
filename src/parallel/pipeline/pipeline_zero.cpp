// src/parallel/pipeline/pipeline_zero.cpp — see pipeline_zero.h (PipelineEngine::build_optimizer,
// in pipeline_state.cpp, picks it when zero = 1).
#include "parallel/pipeline/pipeline_zero.h"

#include "parallel/pipeline/pipeline_engine.h"
#include "parallel/zero/flat_buffer.h"
#include "parallel/zero/sharded_optimizer.h"

namespace paratorch::pipeline {
namespace {

class Zero1Optimizer final : public optim::Optimizer {
 public:
  Zero1Optimizer(const optim::OptimizerOptions& options, optim::NamedTensors params, std::shared_ptr<Communicator> dp,
                 int dp_rank)
      : params_(std::move(params)), dp_(std::move(dp)) {
    std::vector<zero::FlatParam> flat;
    for (const auto& [name, p] : params_) flat.push_back({name, p.sizes().vec(), p.dim() >= 2});
    const int ranks = dp_ ? dp_->size() : 1;
    layout_ = std::make_unique<zero::FlatLayout>(flat, ranks, ranks > 1 ? dp_rank : 0);
    const auto fp32 = torch::TensorOptions().dtype(torch::kFloat).device(params_.front().second.device());
    master_ = torch::zeros({layout_->shard_numel()}, fp32);
    grad_ = torch::zeros({layout_->shard_numel()}, fp32);
    const std::vector<zero::ShardUnit> units{{layout_.get(), master_, grad_}};
    inner_ = std::make_unique<zero::ShardedOptimizer>(
        options, units, zero::make_pieces(units), ranks > 1 ? dp_ : nullptr,
        [this] { return take_shards(); }, [this] { publish(); });
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
  // The model's parameters are the truth (load_full_parameters writes
  // them), so each step starts from their shard; gradients are already
  // dp-averaged and clipped. Returns true: the update always runs.
  bool take_shards() {
    torch::NoGradGuard no_grad;
    for (const auto& piece : layout_->pieces()) {
      const auto& p = params_[piece.param].second;
      master_.narrow(0, piece.shard_offset, piece.length).copy_(p.reshape({-1}).narrow(0, piece.param_offset, piece.length));
      auto g = grad_.narrow(0, piece.shard_offset, piece.length);
      if (p.grad().defined()) g.copy_(p.grad().reshape({-1}).narrow(0, piece.param_offset, piece.length));
      else g.zero_();
    }
    return true;
  }

  // Every replica's parameters from the updated shards.
  void publish() {
    torch::NoGradGuard no_grad;
    torch::Tensor full = master_;
    if (layout_->ranks() > 1) {
      full = torch::empty({layout_->padded_numel()}, master_.options());
      dp_->all_gather(full, master_.clone());
    }
    const auto views = layout_->views(full);
    for (size_t i = 0; i < params_.size(); ++i) params_[i].second.copy_(views[i]);
  }

  optim::NamedTensors params_;
  std::shared_ptr<Communicator> dp_;
  std::unique_ptr<zero::FlatLayout> layout_;
  torch::Tensor master_, grad_;
  std::unique_ptr<zero::ShardedOptimizer> inner_;
};

}  // namespace

std::unique_ptr<optim::Optimizer> make_zero1_optimizer(const optim::OptimizerOptions& options,
                                                       optim::NamedTensors params, std::shared_ptr<Communicator> dp,
                                                       int dp_rank) {
  if (params.empty()) return optim::make_optimizer(options, std::move(params));
  return std::make_unique<Zero1Optimizer>(options, std::move(params), std::move(dp), dp_rank);
}

// zero = 1: this stage's optimizer state sharded over its dp replicas.
}  // namespace paratorch::pipeline
