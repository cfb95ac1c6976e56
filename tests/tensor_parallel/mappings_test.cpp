// tests/tensor_parallel/mappings_test.cpp — each tp mapping against the
// unsplit math it stands for, forward and gradient, with the world as the tp
// group (np 2 and 4). Every rank can compute every rank's inputs (seeded by
// rank), so the reference is computed locally.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/init.h>

using namespace paratorch::tensor_parallel;

namespace {

TensorParallelContext mappings_tp() { return {test_world().comm(), false}; }

// Rank r's input: [2, 4*size, 3*size] seeded by (name, r).
torch::Tensor mappings_input(const std::string& name, int r, int size) {
  return torch::randn({2, 4 * size, 3 * size}, paratorch::generator_for(11, name + std::to_string(r)));
}

std::vector<torch::Tensor> mappings_inputs(const std::string& name, int size) {
  std::vector<torch::Tensor> xs;
  for (int r = 0; r < size; ++r) xs.push_back(mappings_input(name, r, size));
  return xs;
}

torch::Tensor mappings_sum(const std::vector<torch::Tensor>& xs) {
  auto s = torch::zeros_like(xs[0]);
  for (const auto& x : xs) s += x;
  return s;
}

}  // namespace

TEST(TensorParallelMappings, CopyToTpSumsGradients) {
  auto tp = mappings_tp();
  const int r = tp.rank(), n = tp.size();
  auto x = mappings_input("x", 0, n).requires_grad_();
  auto y = copy_to_tp(x, tp);
  EXPECT_TRUE(torch::equal(y, x));
  auto weights = mappings_inputs("w", n);
  (y * weights[r]).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), mappings_sum(weights), 1e-5, 1e-6));
}

TEST(TensorParallelMappings, ReduceFromTpSumsForwardOnly) {
  auto tp = mappings_tp();
  const int r = tp.rank(), n = tp.size();
  auto xs = mappings_inputs("x", n);
  auto x = xs[r].clone().requires_grad_();
  auto y = reduce_from_tp(x, tp);
  EXPECT_TRUE(torch::allclose(y, mappings_sum(xs), 1e-5, 1e-6));
  auto w = mappings_input("w", 0, n);
  (y * w).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), w));
}

TEST(TensorParallelMappings, GatherAndScatterLastDim) {
  auto tp = mappings_tp();
  const int r = tp.rank(), n = tp.size();
  auto xs = mappings_inputs("x", n);
  auto x = xs[r].clone().requires_grad_();
  auto y = gather_from_tp(x, tp);
  EXPECT_TRUE(torch::equal(y, torch::cat(xs, -1)));
  auto w = torch::randn(y.sizes(), paratorch::generator_for(3, "w"));
  (y * w).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), w.chunk(n, -1)[r]));

  auto full = torch::cat(xs, -1).requires_grad_();
  auto part = scatter_to_tp(full, tp);
  EXPECT_TRUE(torch::equal(part, xs[r]));
  auto ws = mappings_inputs("w", n);
  (part * ws[r]).sum().backward();  // every rank's slice gets its own rank's weight
  EXPECT_TRUE(torch::equal(full.grad(), torch::cat(ws, -1)));
}

TEST(TensorParallelMappings, SequenceGatherReducesScatteredGradients) {
  auto tp = mappings_tp();
  const int r = tp.rank(), n = tp.size();
  auto xs = mappings_inputs("x", n);
  auto x = xs[r].clone().requires_grad_();
  auto y = gather_from_sequence(x, tp);  // dim 1
  EXPECT_TRUE(torch::equal(y, torch::cat(xs, 1)));
  std::vector<torch::Tensor> ws;
  for (int q = 0; q < n; ++q) ws.push_back(torch::randn(y.sizes(), paratorch::generator_for(5, std::to_string(q))));
  (y * ws[r]).sum().backward();
  // d/dx_r of sum_q <gather(x), w_q> = sum_q (w_q's slice r): a reduce-scatter.
  EXPECT_TRUE(torch::allclose(x.grad(), mappings_sum(ws).chunk(n, 1)[r], 1e-5, 1e-6));
}

TEST(TensorParallelMappings, SequenceReduceScatterAndScatter) {
  auto tp = mappings_tp();
  const int r = tp.rank(), n = tp.size();
  auto xs = mappings_inputs("x", n);
  auto x = xs[r].clone().requires_grad_();
  auto y = reduce_scatter_to_sequence(x, tp);
  EXPECT_TRUE(torch::allclose(y, mappings_sum(xs).chunk(n, 1)[r], 1e-5, 1e-6));
  auto ws = mappings_inputs("w", n);
  auto w = ws[r].chunk(n, 1)[r];
  (y * w).sum().backward();
  std::vector<torch::Tensor> slices;
  for (int q = 0; q < n; ++q) slices.push_back(ws[q].chunk(n, 1)[q]);
  EXPECT_TRUE(torch::equal(x.grad(), torch::cat(slices, 1)));  // all-gather of the slices

  auto full = xs[0].clone().requires_grad_();
  auto part = scatter_to_sequence(full, tp);
  EXPECT_TRUE(torch::equal(part, xs[0].chunk(n, 1)[r]));
  (part * w).sum().backward();
  EXPECT_TRUE(torch::equal(full.grad(), torch::cat(slices, 1)));
}

TEST(TensorParallelMappings, InactiveContextIsIdentity) {
  TensorParallelContext none;
  auto x = torch::randn({2, 4, 6});
  for (auto y : {copy_to_tp(x, none), reduce_from_tp(x, none), gather_from_tp(x, none), scatter_to_tp(x, none),
                 gather_from_sequence(x, none), reduce_scatter_to_sequence(x, none), scatter_to_sequence(x, none)})
    EXPECT_TRUE(torch::equal(y, x));
}
