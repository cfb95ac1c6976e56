// src/parallel/finalize_grads.h — what happens to gradients between the end
// of backward and the optimizer step (Megatron-LM's finalize_model_grads).
//
// After backward each rank's gradients are partial in up to three ways; the
// optimizer needs them whole. In order:
//  1. dp: replicas computed different samples. The gradient path (the DDP
//     reducer, ZeRO's reduce-scatter, a pipeline stage's flat all-reduce)
//     averages them over dp, overlapping backward where it can; it is not
//     done here.
//  2. sequence parallelism (Korthikanti et al. 2022): a parameter whole on
//     every tp rank but applied to this rank's slice of the sequence
//     (ShardSpec::partial_grad: LayerNorms, wpe, row-parallel biases) holds
//     the gradient of that slice only: summed over tp, in one flat
//     all-reduce.
//  3. tied weights (Press & Wolf 2017): a weight used on the first and the
//     last pipeline stage (gpt's token embedding and output head) has a copy
//     on each, each holding its own stage's share: the copies' gradients are
//     summed across the ranks that hold them (Megatron-LM's embedding group),
//     so both take the same optimizer step and stay equal.
// Every step is a sum (or average) over its own group, and all are linear,
// so an engine may run step 1 before or after 2-3; the result is the same
// up to float summation order. Afterwards the gradient norm of the whole
// model is parallel::sum_squares_across (grad_norm.h).
//
// Example (a pipeline stage with tp > 1):
//   parallel::FinalizeGradients f;
//   f.partial_over_tp = {ln_weight.grad(), ln_bias.grad()};
//   f.tp = groups.tp().get();
//   f.tied = {{{wte.grad()}, {}}};
//   f.tied_ranks = groups.embedding().get();
//   parallel::finalize_gradients(f);
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <vector>

namespace paratorch::parallel {

/// One tied weight's gradients on this rank.
struct TiedGradients {
  /// The gradients of this rank's distinct copies (none on a rank without
  /// one); each is overwritten with the sum of all copies on all ranks.
  std::vector<torch::Tensor> copies;
  /// A rank without a copy that still takes part in the sum adds this
  /// (zeros of the weight's shape); unused when `copies` is not empty.
  torch::Tensor zero;
};

/// The gradients to finalize and the groups they are partial over.
struct FinalizeGradients {
  /// Step 2: gradients summed over `tp`. Every tp rank lists the same
  /// parameters in the same order.
  std::vector<torch::Tensor> partial_over_tp;
  Communicator* tp = nullptr;
  /// Step 3: each weight's copies summed over `tied_ranks` (null: the
  /// copies on this rank only). Every rank of `tied_ranks` lists the same
  /// weights in the same order.
  std::vector<TiedGradients> tied;
  Communicator* tied_ranks = nullptr;
};

/// Steps 2 and 3 above, in that order. Collective over f.tp (when it has
/// more than one rank and partial_over_tp is not empty) and f.tied_ranks.
void finalize_gradients(const FinalizeGradients& f);

/// Step 2 alone: `partial` summed in place over `tp`, in one flat
/// all-reduce traced as "tp.partial_grads".
void sum_partial_gradients(const std::vector<torch::Tensor>& partial, Communicator& tp);

/// Step 3 alone, for one weight.
void sum_tied_gradients(const TiedGradients& tied, Communicator* ranks);

}  // namespace paratorch::parallel
