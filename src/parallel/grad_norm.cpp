// src/parallel/grad_norm.cpp — see grad_norm.h. Each rank's squares are set
// apart by kind (tp shards, replicated over tp, tied copies), then each part
// crosses only the groups it is split over. sum_squares_across is given the
// whole local sum and rereads the other kinds to set them apart;
// sum_squares_of reads each gradient (or its replica share) once.
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

namespace {

// [tp shards' squares, tp-replicated squares], both split over `shards` and
// `replicas`, to the whole model's: the shards add over tp, the replicated
// ones stay counted once, the stages add over pp.
double add_across(double sharded, double replicated, const NormGroups& groups) {
  auto parts = torch::tensor({sharded, replicated}, torch::kDouble);
  if (spans(groups.shards)) groups.shards->all_reduce(parts, ReduceOp::kSum);
  if (spans(groups.replicas)) groups.replicas->all_reduce(parts, ReduceOp::kSum);
  auto tp_shards = parts.narrow(0, 0, 1).clone();
  if (spans(groups.tp)) groups.tp->all_reduce(tp_shards, ReduceOp::kSum);
  auto total = torch::tensor({tp_shards.item<double>() + parts[1].item<double>()}, torch::kDouble);
  if (spans(groups.pp)) groups.pp->all_reduce(total, ReduceOp::kSum);
  return total.item<double>();
}

}  // namespace

double sum_squares_across(double local, const std::vector<NormEntry>& entries, const NormGroups& groups) {
  TORCH_CHECK(!spans(groups.replicas), "sum_squares_across: `local` read every gradient; use sum_squares_of");
  torch::NoGradGuard no_grad;
  double replicated = 0, tied = 0;
  for (const auto& e : entries) {
    if (e.tied_copy) tied += sum_of_squares(e.grad);
    else if (!e.spec.sharded()) replicated += sum_of_squares(e.grad);
  }
  return add_across(local - tied - replicated, replicated, groups);
}

double sum_squares_of(const std::vector<NormEntry>& entries, const NormGroups& groups) {
  torch::NoGradGuard no_grad;
  std::vector<NormEntry> counted;
  for (const auto& e : entries)
    if (e.grad.defined() && !e.tied_copy) counted.push_back(e);  // a tied copy's owner counts it
  if (spans(groups.replicas)) counted = replica_share(counted, groups.replicas->rank(), groups.replicas->size());
  double sharded = 0, replicated = 0;
  for (const auto& e : counted) (e.spec.sharded() ? sharded : replicated) += sum_of_squares(e.grad);
  return add_across(sharded, replicated, groups);
}

std::vector<NormEntry> replica_share(const std::vector<NormEntry>& entries, int rank, int replicas) {
  int64_t total = 0;
  for (const auto& e : entries) total += e.grad.defined() ? e.grad.numel() : 0;
  const int64_t begin = total * rank / replicas, end = total * (rank + 1) / replicas;
  std::vector<NormEntry> out;
  int64_t at = 0;  // where the entry starts in the concatenation
  for (const auto& e : entries) {
    if (!e.grad.defined()) continue;
    const int64_t n = e.grad.numel(), from = std::max(begin, at), to = std::min(end, at + n);
    if (from < to) out.push_back({e.grad.reshape(-1).narrow(0, from - at, to - from), e.spec, e.tied_copy});
    at += n;
  }
  return out;
}

}  // namespace paratorch::parallel
