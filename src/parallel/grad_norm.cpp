// src/parallel/grad_norm.cpp — see grad_norm.h. The squares of the entries
// that do not count as plain local shards (replicated over tp, tied copies)
// are recomputed here and set apart from `local`, then each part crosses
// only the groups it is split over.
#include "parallel/grad_norm.h"

#include "parallel/grad_norm_kernel.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace paratorch::parallel {
namespace {

bool spans(const Communicator* group) { return group != nullptr && group->size() > 1; }

// Fixed chunks, summed in chunk order: the result does not depend on how
// many threads computed them.
constexpr int64_t kSquaresChunk = 1 << 16;

double fused_sum_of_squares(const torch::Tensor& t) {
  const float* x = t.data_ptr<float>();
  const int64_t n = t.numel(), chunks = (n + kSquaresChunk - 1) / kSquaresChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      partial[static_cast<size_t>(c)] =
          sum_of_squares_range(x + c * kSquaresChunk, std::min(kSquaresChunk, n - c * kSquaresChunk));
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

double sum_of_squares(const torch::Tensor& t) {
  if (!t.defined()) return 0.0;
  torch::NoGradGuard no_grad;
  if (t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous()) return fused_sum_of_squares(t);
  return t.to(torch::kDouble).pow(2).sum().item<double>();
}

double local_grad_sum_of_squares(const std::vector<torch::Tensor>& params) {
  double total = 0;
  for (const auto& p : params) total += sum_of_squares(p.grad());
  return total;
}

double sum_squares_across(double local, const std::vector<NormEntry>& entries, const NormGroups& groups) {
  torch::NoGradGuard no_grad;
  double replicated = 0, tied = 0;
  for (const auto& e : entries) {
    if (e.tied_copy) tied += sum_of_squares(e.grad);
    else if (!e.spec.sharded()) replicated += sum_of_squares(e.grad);
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
