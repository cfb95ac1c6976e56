// tests/parallel/pipeline/partition_test.cpp — cutting blocks into stages: the
// balanced split is optimal, explicit cuts are checked, and the bundled
// models' blocks partition by parameters as expected.
#include "parallel/pipeline/partition.h"
#include "verify/equivalence.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <random>

namespace paratorch::pipeline {
namespace {

double largest_part(const std::vector<double>& costs, const std::vector<int>& first) {
  double worst = 0;
  for (size_t s = 0; s + 1 < first.size(); ++s) {
    double c = 0;
    for (int i = first[s]; i < first[s + 1]; ++i) c += costs[static_cast<size_t>(i)];
    worst = std::max(worst, c);
  }
  return worst;
}

// Every contiguous split, for checking the dynamic programme on small inputs.
double brute_force_best(const std::vector<double>& costs, int stages, std::vector<int> first = {0}) {
  const int n = static_cast<int>(costs.size());
  if (static_cast<int>(first.size()) == stages) {
    first.push_back(n);
    return largest_part(costs, first);
  }
  double best = 1e300;
  for (int cut = first.back() + 1; cut <= n - (stages - static_cast<int>(first.size())); ++cut) {
    auto next = first;
    next.push_back(cut);
    best = std::min(best, brute_force_best(costs, stages, next));
  }
  return best;
}

TEST(PipelinePartition, BalancedCutsMinimizeTheLargestStage) {
  EXPECT_EQ(balanced_cuts({1, 1, 1, 1}, 2), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(balanced_cuts({5, 1, 1, 1, 1, 1}, 2), (std::vector<int>{0, 1, 6}));
  EXPECT_EQ(balanced_cuts({1, 2, 3}, 3), (std::vector<int>{0, 1, 2, 3}));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<double> costs(static_cast<size_t>(3 + trial % 6));
    for (auto& c : costs) c = static_cast<double>(rng() % 100 + 1);
    for (int stages = 1; stages <= static_cast<int>(costs.size()); ++stages) {
      auto first = balanced_cuts(costs, stages);
      ASSERT_EQ(first.size(), static_cast<size_t>(stages) + 1);
      for (size_t s = 0; s + 1 < first.size(); ++s) EXPECT_LT(first[s], first[s + 1]);  // no empty stage
      EXPECT_DOUBLE_EQ(largest_part(costs, first), brute_force_best(costs, stages));
    }
  }
}

TEST(PipelinePartition, ExplicitCutsWithOrWithoutTheLeadingZero) {
  EXPECT_EQ(parse_cuts("3,5", 8, 3), (std::vector<int>{0, 3, 5, 8}));
  EXPECT_EQ(parse_cuts("0,3,5", 8, 3), (std::vector<int>{0, 3, 5, 8}));
  auto message = [](const std::string& text, int n, int stages) {
    try {
      parse_cuts(text, n, stages);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("3", 8, 3).find("needs 2 cut point(s) for 3 stages"), std::string::npos);
  EXPECT_NE(message("5,3", 8, 3).find("must increase and lie in 1..7"), std::string::npos);
  EXPECT_NE(message("3,8", 8, 3).find("must increase"), std::string::npos);
  EXPECT_NE(message("a,b", 8, 3).find("PipelineEngineOptions::partition"), std::string::npos);
}

TEST(PipelinePartition, GptByParamsCountsTheTiedHeadCopy) {
  auto config = verify::small_model("gpt");  // embed, h.0, h.1, head
  config.n_layers = 4;
  auto model = models::make_model(config);
  auto blocks = model->blocks();
  auto counts = block_parameter_counts(*model, blocks);
  const double wte = 256.0 * 64;
  EXPECT_DOUBLE_EQ(counts.back(), wte + 2 * 64);  // ln_f + the tied embedding it uses
  auto p = make_partition("params", *model, blocks, 2);
  EXPECT_EQ(p.first, (std::vector<int>{0, 3, 6}));
  EXPECT_EQ(p.params[0] + p.params[1], static_cast<int64_t>(counts[0] + counts[1] + counts[2] + counts[3] + counts[4] + counts[5]));
  EXPECT_NE(p.report(blocks).find("stage 1: blocks 3..5 (transformer.h.2 .. head)"), std::string::npos) << p.report(blocks);
}

TEST(PipelinePartition, ByTimeBalancesTheMeasuredTimes) {
  auto config = verify::small_model("mlp");
  auto model = models::make_model(config);
  auto blocks = model->blocks();
  auto ms = measure_block_ms(blocks, torch::randn({8, config.d_in}), 2);
  ASSERT_EQ(ms.size(), blocks.size());
  for (double t : ms) EXPECT_GT(t, 0);
  auto p = make_partition("time", *model, blocks, 2, {1.0, 1.0, 1.0, 5.0});
  EXPECT_EQ(p.first, (std::vector<int>{0, 3, 4}));
  EXPECT_DOUBLE_EQ(p.cost[1], 5.0);
}

TEST(PipelinePartition, TooFewBlocksAndUnevenInterleavingAreUsageErrors) {
  auto message = [](int n, int pp, int v, const std::string& schedule) {
    try {
      check_block_count(n, pp, v, schedule, "gpt");
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(4, 8, 1, "1f1b").find("Layout::pp = 8 needs 8 blocks but model \"gpt\" has 4"), std::string::npos);
  EXPECT_NE(message(6, 2, 2, "interleaved").find("needs the model's 6 blocks divisible by Layout::pp x PipelineEngineOptions::virtual_stages = 4"),
            std::string::npos);
  EXPECT_EQ(message(8, 2, 2, "interleaved"), "no error");
  EXPECT_EQ(message(5, 2, 1, "gpipe"), "no error");
}

}  // namespace
}  // namespace paratorch::pipeline
