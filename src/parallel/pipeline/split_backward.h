// src/parallel/pipeline/split_backward.h — one stage's backward as two passes
// (Qi et al., "Zero Bubble Pipeline Parallelism", 2023): I computes the
// gradient of the stage's input, which the previous stage waits for; W later
// computes the parameters' gradients, which only the optimizer waits for.
//
// Both run on libtorch's autograd graph of an unmodified model, with no
// layer of our own. I backpropagates to the input alone: autograd then skips
// every weight-gradient computation (a node computes only the outputs its
// graph task needs). Before it runs, I marks the "intermediate" nodes: those
// on the path to the input with an edge that leaves it towards parameters
// (a matmul's node, whose other input is a weight). A pre-hook on each keeps
// the gradient that arrives there. W then starts the engine at each
// intermediate with the kept gradient and asks only for that intermediate's
// parameters, so it computes dW = dYᵀX and the like, not the input path
// again. Gradients accumulate into .grad (parameter hooks, e.g. a DDP
// Reducer's, fire as in backward()), exactly as one backward would leave
// them. After I, the input path's other nodes release their saved tensors
// (W never runs them): a retained graph keeps only what W reads.
//
// A parameter reached from two intermediates (a weight used twice in one
// stage) would be counted twice that way: such a graph is not split; W then
// runs the whole backward to the parameters, I having computed the input's
// gradient already (correct, at the cost of the input path twice).
//
// The first stage's input needs no gradient. Its I runs the activation path
// down to the "bottom" nodes instead — the lowest ones, whose every edge is
// a chain to one parameter (the sum of the token and position embeddings,
// a first linear layer) — and keeps what arrives there; W starts from them
// as from any intermediate. (A stage without such a node, one chain to one
// weight, runs its whole backward in W.)
#pragma once
#include <torch/torch.h>

#include <memory>

namespace paratorch::pipeline {

class SplitBackward {
 public:
  /// I: backpropagates `grad_output` from `output` to `input` (a leaf; if it
  /// does not require grad, to the graph's bottom nodes), keeping the graph
  /// for W. An undefined `grad_output` seeds a scalar `output` (a loss) with
  /// 1. Returns the input's gradient (undefined for an input without one).
  torch::Tensor input_pass(const torch::Tensor& output, const torch::Tensor& grad_output, const torch::Tensor& input);
  /// W: accumulates the parameters' gradients into .grad and lets the graph go.
  void weight_pass();
  /// Whether input_pass found a graph it could split (see the header comment).
  bool split() const;
  /// Intermediate nodes W starts from (0 when not split).
  size_t intermediates() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace paratorch::pipeline
