// src/parallel/pipeline/branch_parallel.cpp — see branch_parallel.h.
#include "parallel/pipeline/branch_parallel.h"

#include <paratorch/errors.h>

namespace paratorch::pipeline {
namespace {

// Identity forward; backward sums the input gradient over the group (each
// rank's branches contributed a part of it).
struct SumGradOverGroup : public torch::autograd::Function<SumGradOverGroup> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, Communicator* group) {
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return x.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<Communicator*>(ctx->saved_data["group"].toInt());
    torch::Tensor g = grads[0].contiguous().clone();
    group->all_reduce(g, ReduceOp::kSum);
    return {g, torch::Tensor()};
  }
};

constexpr int64_t kBranchMaxDims = 8;

// Branch b's output, broadcast from its owner: shape first, then values.
torch::Tensor broadcast_output(Communicator& group, int owner, const torch::Tensor& mine, const torch::Tensor& like) {
  auto shape = torch::zeros({kBranchMaxDims + 1}, torch::kLong);
  if (group.rank() == owner) {
    if (mine.dim() > kBranchMaxDims) throw UsageError("paratorch: branch outputs may have at most 8 dimensions");
    shape[0] = mine.dim();
    for (int64_t d = 0; d < mine.dim(); ++d) shape[d + 1] = mine.size(d);
  }
  group.broadcast(shape, owner);
  std::vector<int64_t> sizes;
  for (int64_t d = 0; d < shape[0].item<int64_t>(); ++d) sizes.push_back(shape[d + 1].item<int64_t>());
  torch::Tensor values = group.rank() == owner ? mine.detach().contiguous() : torch::empty(sizes, like.options());
  group.broadcast(values, owner);
  return values;
}

// The example's branches: different shapes of computation, as Inception's.
struct TwoLayerBranchImpl : torch::nn::Module {
  TwoLayerBranchImpl(int d, int width)
      : fc1(register_module("fc1", torch::nn::Linear(d, 2 * width))),
        fc2(register_module("fc2", torch::nn::Linear(2 * width, width))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(TwoLayerBranch);

struct NormBranchImpl : torch::nn::Module {
  NormBranchImpl(int d, int width)
      : ln(register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})))),
        fc(register_module("fc", torch::nn::Linear(d, width))) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::tanh(fc(ln(x))); }
  torch::nn::LayerNorm ln;
  torch::nn::Linear fc;
};
TORCH_MODULE(NormBranch);

}  // namespace

BranchParallelImpl::BranchParallelImpl(std::vector<torch::nn::AnyModule> branches, BranchCombine combine, int64_t dim,
                                       std::shared_ptr<Communicator> group)
    : branches_(std::move(branches)), combine_(combine), dim_(dim), group_(std::move(group)) {
  if (branches_.empty()) throw UsageError("paratorch: a branch-parallel layer needs at least one branch");
  for (size_t b = 0; b < branches_.size(); ++b) register_module("b" + std::to_string(b), branches_[b].ptr());
}

int BranchParallelImpl::owner_of(size_t branch) const {
  return group_ ? static_cast<int>(branch % static_cast<size_t>(group_->size())) : 0;
}

bool BranchParallelImpl::is_local(size_t branch) const { return !group_ || owner_of(branch) == group_->rank(); }

torch::Tensor BranchParallelImpl::forward(const torch::Tensor& x) {
  const bool spread = group_ && group_->size() > 1;
  torch::Tensor in = spread && torch::GradMode::is_enabled() ? SumGradOverGroup::apply(x, group_.get()) : x;
  std::vector<torch::Tensor> outs(branches_.size());
  for (size_t b = 0; b < branches_.size(); ++b)
    if (is_local(b)) outs[b] = branches_[b].forward(in);
  if (spread)
    for (size_t b = 0; b < branches_.size(); ++b) {
      torch::Tensor got = broadcast_output(*group_, owner_of(b), outs[b], x);
      if (!is_local(b)) outs[b] = got;  // a constant here: its gradient belongs to the owner
    }
  torch::Tensor out;
  if (combine_ == BranchCombine::kConcat) {
    out = torch::cat(outs, dim_);
  } else {
    out = outs[0];
    for (size_t b = 1; b < outs.size(); ++b) out = out + outs[b];
  }
  bool any_local = false;
  for (size_t b = 0; b < branches_.size(); ++b) any_local = any_local || is_local(b);
  // A rank without a branch still joins the backward's all-reduce: tie its
  // output to the input by a zero term, so autograd reaches the operator.
  if (spread && !any_local && in.requires_grad()) out = out + in.reshape({-1}).narrow(0, 0, 1).sum() * 0;
  return out;
}

BranchyMlpImpl::BranchyMlpImpl(int d_in, int d_model, int n_classes, std::shared_ptr<Communicator> group,
                               BranchCombine combine) {
  stem = register_module("stem", torch::nn::Linear(d_in, d_model));
  const int width = 16;  // every branch's output width (sum needs equal widths)
  std::vector<torch::nn::AnyModule> b;
  b.emplace_back(torch::nn::Linear(d_model, width));
  b.emplace_back(TwoLayerBranch(d_model, width));
  b.emplace_back(NormBranch(d_model, width));
  const int out = combine == BranchCombine::kConcat ? 3 * width : width;
  branches = register_module("branches", BranchParallel(std::move(b), combine, -1, std::move(group)));
  head = register_module("head", torch::nn::Linear(out, n_classes));
}

torch::Tensor BranchyMlpImpl::forward(const torch::Tensor& x) {
  return head(branches(torch::gelu(stem(x))));
}

}  // namespace paratorch::pipeline
