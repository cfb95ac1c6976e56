// src/parallel/pipeline/pipeline.cpp — paratorch::Pipeline, the public face
// of PipelineRunner (runner.h).
#include <paratorch/pipeline.h>

#include "parallel/pipeline/runner.h"
#include "parallel/grad_clip.h"

namespace paratorch {

Pipeline::Pipeline(std::vector<PipelineBlock> blocks, std::shared_ptr<Communicator> pp, torch::Tensor example_input,
                   PipelineOptions options)
    : runner_(std::make_unique<PipelineRunner>(std::move(blocks), std::move(pp), std::move(example_input),
                                               std::move(options))) {}

Pipeline::Pipeline(const torch::nn::Sequential& sequential, std::shared_ptr<Communicator> pp,
                   torch::Tensor example_input, PipelineOptions options)
    : Pipeline(blocks_of(sequential), std::move(pp), std::move(example_input), std::move(options)) {}

Pipeline::~Pipeline() = default;

double Pipeline::step(const torch::Tensor& input, const torch::Tensor& target, const PipelineLoss& loss_fn) {
  return runner_->step(input, target, loss_fn);
}

torch::Tensor Pipeline::forward(const torch::Tensor& input) { return runner_->forward(input); }

std::vector<torch::Tensor> Pipeline::parameters() const { return runner_->parameters().local(); }

std::map<std::string, torch::Tensor> Pipeline::named_parameters() const { return runner_->parameters().named_local(); }

double Pipeline::clip_grad_norm(double max_norm, std::shared_ptr<Communicator> tp_group) {
  const bool tp = tp_group && tp_group->size() > 1;
  return parallel::clip_norm_entries(runner_->norm_entries(tp), max_norm,
                                     {nullptr, tp ? tp_group.get() : nullptr, &runner_->pp()});
}

std::vector<std::string> Pipeline::tied_copies() const { return runner_->parameters().tied_copy_names(); }

void Pipeline::set_gradient_sync(std::function<void(bool last)> sync) { runner_->set_gradient_sync(std::move(sync)); }

std::map<std::string, torch::Tensor> Pipeline::full_parameters() { return runner_->parameters().full(runner_->pp()); }

const std::vector<int>& Pipeline::stage_starts() const { return runner_->partition().first; }

std::vector<std::string> Pipeline::local_block_names() const { return runner_->local_block_names(); }

std::string Pipeline::describe() const { return runner_->describe(); }

}  // namespace paratorch
