// src/parallel/finalize_grads.cpp — see finalize_grads.h: the sequence-
// parallel partial sums over tp, then the tied copies' sums.
#include "parallel/finalize_grads.h"

#include "report/trace.h"
#include "tensor_parallel/mappings.h"

namespace paratorch::parallel {

void sum_partial_gradients(const std::vector<torch::Tensor>& partial, Communicator& tp) {
  if (partial.empty() || tp.size() == 1) return;
  report::Tracer::Span span("tp.partial_grads", "tp");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flats;
  for (const auto& g : partial) flats.push_back(g.reshape({-1}));
  auto flat = torch::cat(flats);
  tensor_parallel::timed_all_reduce(flat, tp, ReduceOp::kSum);
  int64_t offset = 0;
  for (auto g : partial) {
    g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
}

void sum_tied_gradients(const TiedGradients& tied, Communicator* ranks) {
  torch::NoGradGuard no_grad;
  const bool across = ranks != nullptr && ranks->size() > 1;
  if (!across && tied.copies.size() <= 1) return;  // nothing to add
  torch::Tensor sum = tied.copies.empty() ? tied.zero.clone() : tied.copies.front().clone();
  for (size_t i = 1; i < tied.copies.size(); ++i) sum += tied.copies[i];
  if (across) ranks->all_reduce(sum, ReduceOp::kSum);
  for (auto t : tied.copies) t.copy_(sum);
}

void finalize_gradients(const FinalizeGradients& f) {
  if (f.tp != nullptr) sum_partial_gradients(f.partial_over_tp, *f.tp);
  for (const auto& t : f.tied) sum_tied_gradients(t, f.tied_ranks);
}

}  // namespace paratorch::parallel
