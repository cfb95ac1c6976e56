// tests/comm/reduce_reference.h — an in-place all-reduce path checked
// against the elementwise reduction of every rank's values (fp32 and fp64;
// sum, average, max, min), and the ranks' results against rank 0's, bitwise.
#pragma once
#include <gtest/gtest.h>

#include "mpi_test_env.h"

#include <functional>
#include <vector>

/// `all_reduce(t, op)` must reduce t in place over every rank of the world.
inline void expect_all_reduce_matches_reference(int64_t n,
                                                const std::function<void(torch::Tensor&, paratorch::ReduceOp)>& all_reduce) {
  using paratorch::ReduceOp;
  const int rank = test_world().rank(), size = test_world().size();
  auto values_of = [n](int r, torch::ScalarType type) {
    return (torch::arange(n, torch::kDouble).remainder(1009) * 0.001 + r * 0.25 - 0.3).to(type);
  };
  for (auto type : {torch::kFloat, torch::kDouble}) {
    std::vector<torch::Tensor> all;
    for (int q = 0; q < size; ++q) all.push_back(values_of(q, type));
    auto stacked = torch::stack(all);
    for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
      auto t = values_of(rank, type);
      all_reduce(t, op);
      torch::Tensor want;
      if (op == ReduceOp::kSum) want = stacked.sum(0);
      if (op == ReduceOp::kAvg) want = stacked.sum(0) / size;
      if (op == ReduceOp::kMax) want = std::get<0>(stacked.max(0));
      if (op == ReduceOp::kMin) want = std::get<0>(stacked.min(0));
      EXPECT_TRUE(torch::allclose(t, want, 1e-6, 1e-6)) << "op " << static_cast<int>(op) << " " << type;
      auto rank0 = t.clone();
      test_world().comm()->broadcast(rank0, 0);
      EXPECT_TRUE(torch::equal(t, rank0)) << "ranks disagree bitwise, op " << static_cast<int>(op);
    }
  }
}
