// src/parallel/grad_norm.cpp — see grad_norm.h. The squares of the entries
// that do not count as plain local shards (replicated over tp, tied copies)
// are recomputed here and set apart from `local`, then each part crosses
// only the groups it is split over.
#include "parallel/grad_norm.h"

namespace paratorch::parallel {
namespace {

bool spans(const Communicator* group) { return group != nullptr && group->size() > 1; }

double squares(const torch::Tensor& g) { return g.defined() ? g.pow(2).sum().item<double>() : 0.0; }

}  // namespace

double sum_squares_across(double local, const std::vector<NormEntry>& entries, const NormGroups& groups) {
  torch::NoGradGuard no_grad;
  double replicated = 0, tied = 0;
  for (const auto& e : entries) {
    if (e.tied_copy) tied += squares(e.grad);
    else if (!e.spec.sharded()) replicated += squares(e.grad);
  }
  // [tp shards' squares, tp-replicated squares]: both are split over `shards`.
  auto parts = torch::tensor({local - tied - replicated, replicated}, torch::kDouble);
  if (spans(groups.shards)) groups.shards->all_reduce(parts, ReduceOp::kSum);
  auto sharded = parts.narrow(0, 0, 1).clone();
  if (spans(groups.tp)) groups.tp->all_reduce(sharded, ReduceOp::kSum);  // replicated ones stay counted once
  auto total = torch::tensor({sharded.item<double>() + parts[1].item<double>()}, torch::kDouble);
  if (spans(groups.pp)) groups.pp->all_reduce(total, ReduceOp::kSum);
  return total.item<double>();
}

}  // namespace paratorch::parallel
