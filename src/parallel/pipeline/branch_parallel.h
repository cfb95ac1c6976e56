// src/parallel/pipeline/branch_parallel.h — branch parallelism: a layer whose
// independent branches (Inception-style, Szegedy et al. 2015) run on
// different ranks of a group at the same time.
//
// Branch b runs on group rank b % size. Every rank holds the layer's input
// (the layers around it are replicated) and computes its own branches; each
// branch's output is broadcast from its owner, and the outputs are
// concatenated (along `dim`) or summed, so every rank ends with the layer's
// whole output. Backward is scattered accordingly: the gradient of the
// output reaches each branch on its owner only (received outputs are
// constants), and the partial gradients of the input are summed over the
// group by an identity-forward / all-reduce-backward operator (Megatron-LM's
// "f", Shoeybi et al. 2019). A branch's parameters get gradients on its
// owner only; the others keep an unused copy.
//
// Example:
///   auto layer = BranchParallel(std::vector<torch::nn::AnyModule>{
///       torch::nn::AnyModule(torch::nn::Linear(64, 16)),
///       torch::nn::AnyModule(torch::nn::Linear(64, 32))}, BranchCombine::kConcat, -1, groups.tp());
///   auto y = layer(x);  // [.., 48] on every rank of the group
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace paratorch::pipeline {

enum class BranchCombine { kConcat, kSum };

class BranchParallelImpl : public torch::nn::Module {
 public:
  /// `group` null (or of size 1): every branch runs here — the reference.
  BranchParallelImpl(std::vector<torch::nn::AnyModule> branches, BranchCombine combine, int64_t dim,
                     std::shared_ptr<Communicator> group);
  torch::Tensor forward(const torch::Tensor& x);
  /// Group rank that runs branch b.
  int owner_of(size_t branch) const;
  bool is_local(size_t branch) const;
  size_t branch_count() const { return branches_.size(); }
  /// Parameter name prefixes of branch b ("b0.").
  static std::string branch_prefix(size_t branch) { return "b" + std::to_string(branch) + "."; }

 private:
  std::vector<torch::nn::AnyModule> branches_;
  BranchCombine combine_;
  int64_t dim_;
  std::shared_ptr<Communicator> group_;
};
TORCH_MODULE(BranchParallel);

/// The example model: an Inception-style classifier — a stem, one
/// branch-parallel layer of three different branches concatenated, a head.
class BranchyMlpImpl : public torch::nn::Module {
 public:
  BranchyMlpImpl(int d_in, int d_model, int n_classes, std::shared_ptr<Communicator> group,
                 BranchCombine combine = BranchCombine::kConcat);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear stem{nullptr}, head{nullptr};
  BranchParallel branches{nullptr};
};
TORCH_MODULE(BranchyMlp);

}  // namespace paratorch::pipeline
