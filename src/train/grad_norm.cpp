// src/train/grad_norm.cpp — see grad_norm.h.
#include "train/grad_norm.h"

#include <ATen/Parallel.h>

namespace paratorch::train {
namespace {

// Fixed chunks, summed in chunk order: the result does not depend on how
// many threads computed the chunks.
constexpr int64_t kChunk = 1 << 16;

double fused_sum_of_squares(const torch::Tensor& g) {
  const float* x = g.data_ptr<float>();
  const int64_t n = g.numel(), chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      partial[static_cast<size_t>(c)] = sum_of_squares_range(x + c * kChunk, std::min(kChunk, n - c * kChunk));
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

double local_grad_sum_of_squares(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  double squares = 0;
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    if (g.device().is_cpu() && g.scalar_type() == torch::kFloat && g.is_contiguous())
      squares += fused_sum_of_squares(g);
    else
      squares += g.to(torch::kDouble).pow(2).sum().item<double>();
  }
  return squares;
}

}  // namespace paratorch::train
