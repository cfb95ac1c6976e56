// tests/plan/plan_test.cpp — the planner's model against published figures:
// model-state memory against the ZeRO paper's Table 1 (Rajbhandari et al.,
// 2019), achieved TFLOP/s per GPU against Megatron-LM's weak-scaling runs
// (Narayanan et al., SC'21, Table 1) on the Selene cluster file, and the
// cluster file's and layouts' bad input.
#include <gtest/gtest.h>

#include "plan/cluster.h"
#include "plan/comm_cost.h"
#include "plan/report.h"
#include "plan/search.h"
#include "parallel/pipeline/schedule.h"
#include <paratorch/errors.h>

#include <cmath>
#include <cstdio>
#include <string>

using namespace paratorch;
using namespace paratorch::plan;

namespace {

const std::string kSelene = std::string(PARATORCH_SOURCE_DIR) + "/examples/clusters/selene.toml";

std::string usage_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

// One DGX node of Selene, and a 6.7B-parameter gpt (32 layers of width
// 4096, sequence 2048) with `global_batch` sequences: the pipeline cases.
Cluster one_selene_node() {
  Cluster c = load_cluster(kSelene);
  c.nodes = 1;
  return c;
}
RunShape gpt_6_7b(int64_t global_batch) {
  RunShape run;
  run.model = {32, 4096, 32, 2048, 51200};
  run.global_batch = global_batch;
  return run;
}

}  // namespace

// ZeRO paper Table 1: mixed-precision Adam, 16 bytes per parameter at stage
// 0; per device, stage 1 = 4P + 12P/Nd, stage 2 = 2P + 14P/Nd, stage 3 =
// 16P/Nd (GB = 1e9 bytes). Every cell the table prints for 7.5B, 128B and 1T
// at dp 4, 16, 64 and 1024, compared at the table's own rounding.
TEST(PlanMemory, ZeroTableOneCells) {
  struct Cell { double psi; int dp; double s1, s2, s3; };
  const Cell cells[] = {
      {7.5e9, 4, 52.5, 41.3, 30},     {7.5e9, 16, 35.6, 21.6, 7.5},   {7.5e9, 64, 31.4, 16.6, 1.88},
      {7.5e9, 1024, 30.1, 15.1, 0.12}, {128e9, 4, 896, 704, 512},     {128e9, 16, 608, 368, 128},
      {128e9, 64, 536, 284, 32},       {128e9, 1024, 513.5, 257.75, 2}, {1e12, 4, 7000, 5500, 4000},
      {1e12, 16, 4750, 2875, 1000},    {1e12, 64, 4187.5, 2218.75, 250}, {1e12, 1024, 4011.7, 2013.7, 15.6}};
  for (const auto& c : cells) {
    const double printed[3] = {c.s1, c.s2, c.s3};
    EXPECT_NEAR(model_state_bytes(c.psi, "bf16", "adamw", 0, c.dp).model_states(), 16 * c.psi, 1);
    for (int stage = 1; stage <= 3; ++stage) {
      const double gb = model_state_bytes(c.psi, "bf16", "adamw", stage, c.dp).model_states() / 1e9;
      // The table rounds to three significant figures (more where it prints more).
      const double tolerance = std::max(0.005 * printed[stage - 1], 0.006);
      EXPECT_NEAR(gb, printed[stage - 1], tolerance) << c.psi / 1e9 << "B dp " << c.dp << " stage " << stage;
    }
  }
  // fp32 Adam keeps no master copy: 4 + 4 + 8 bytes.
  EXPECT_DOUBLE_EQ(model_state_bytes(1, "fp32", "adamw", 0, 1).model_states(), 16);
  EXPECT_DOUBLE_EQ(model_state_bytes(1, "fp32", "adamw", 0, 1).optimizer, 8);
}

// Megatron-LM Table 1 (weak scaling on Selene; sequence 2048, vocabulary
// 51,200, full activation recomputation, the published tp and pp). The
// cluster file's gemm_efficiency and gemm_half_dim were calibrated on two
// rows (1.7B and 1T, marked); every other row is predicted within 15%.
TEST(PlanThroughput, MegatronWeakScalingWithinFifteenPercent) {
  struct Row { double billions; int heads, hidden, layers, tp, pp, gpus, batch; double tflops; bool calibration; };
  const Row rows[] = {
      {1.7, 24, 2304, 24, 1, 1, 32, 512, 137, true},       {3.6, 32, 3072, 30, 2, 1, 64, 512, 138, false},
      {7.5, 32, 4096, 36, 4, 1, 128, 512, 142, false},     {18.4, 48, 6144, 40, 8, 1, 256, 1024, 135, false},
      {39.1, 64, 8192, 48, 8, 2, 512, 1536, 138, false},   {76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140, false},
      {145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148, false}, {310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155, false},
      {529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163, false}, {1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163, true}};
  Cluster selene = load_cluster(kSelene);
  double squared_log_error = 0;
  int tested = 0;
  std::printf("%8s %6s %4s %4s %10s %10s %7s  %s\n", "params", "gpus", "tp", "pp", "published", "predicted", "ratio",
              "chosen");
  for (const auto& r : rows) {
    RunShape run;
    run.model = {r.layers, r.hidden, r.heads, 2048, 51200};
    run.global_batch = r.batch;
    run.precision = "fp16";
    run.reduce_precision = "fp16";
    EXPECT_NEAR(run.model.parameters() / 1e9, r.billions, 0.03 * r.billions) << "row " << r.billions << "B";
    Cluster c = selene;
    c.nodes = r.gpus / c.gpus_per_node;
    SearchOptions o;
    o.tp = r.tp, o.pp = r.pp, o.zero = 0, o.recompute = 1;
    const SearchResult s = search_layouts(run, c, o);
    ASSERT_TRUE(s.any_fits()) << r.billions << "B: no layout with tp " << r.tp << " pp " << r.pp << " fits";
    const Prediction& best = s.ranked.front();
    const double ratio = best.tflops_per_gpu / r.tflops;
    std::printf("%7.1fB %6d %4d %4d %10.0f %10.1f %7.3f  %s%s\n", r.billions, r.gpus, r.tp, r.pp, r.tflops,
                best.tflops_per_gpu, ratio, contract_line("", best).c_str(), r.calibration ? " (calibration row)" : "");
    if (!r.calibration) {
      EXPECT_NEAR(ratio, 1.0, 0.15) << r.billions << "B: " << contract_line("", best);
      squared_log_error += std::pow(std::log(ratio), 2), ++tested;
    } else {
      // The file's constants must still reproduce the rows they were fitted
      // on (a change to the model needs a new fit: the test below).
      EXPECT_NEAR(ratio, 1.0, 0.02) << r.billions << "B (calibration row): refit gemm_efficiency/gemm_half_dim";
    }
  }
  // Beyond each row's 15%: the model follows the table's trend. Measured
  // 2026-12-04: rms 2.8% over the eight rows; held to 5%.
  EXPECT_LT(std::sqrt(squared_log_error / tested), 0.05);
}

TEST(PlanCluster, BadFilesNameTheKey) {
  const std::string good =
      "[cluster]\nnodes = 2\ngpus_per_node = 8\npeak_tflops = 312\nmemory_gb = 80\nintra_node_gbps = 300\n"
      "inter_node_gbps = 25\nintra_node_latency_us = 5\ninter_node_latency_us = 10\n";
  EXPECT_EQ(cluster_from_string(good).gpus(), 16);
  EXPECT_NE(usage_error_of([&] { cluster_from_string("[cluster]\nnodes = 2\n"); }).find("gpus_per_node is missing"),
            std::string::npos);
  auto with = [&](const std::string& key, const std::string& value) {
    std::string text = good;
    const auto at = text.find(key + " = ");
    const auto end = text.find('\n', at);
    return usage_error_of([&] { cluster_from_string(text.replace(at, end - at, key + " = " + value)); });
  };
  EXPECT_NE(with("memory_gb", "-80").find("memory_gb"), std::string::npos);
  EXPECT_NE(with("memory_gb", "-80").find("must be > 0"), std::string::npos);
  EXPECT_NE(with("inter_node_gbps", "0").find("inter_node_gbps"), std::string::npos);
  EXPECT_NE(with("inter_node_latency_us", "-1").find("must be >= 0"), std::string::npos);
  EXPECT_NE(with("nodes", "2.5").find("nodes must be an integer"), std::string::npos);
  EXPECT_NE(usage_error_of([&] { cluster_from_string(good + "gpu_per_node = 8\n"); }).find("gpu_per_node is not a cluster key"),
            std::string::npos);
  EXPECT_NE(usage_error_of([&] { load_cluster("/nonexistent/c.toml"); }).find("does not exist"), std::string::npos);
}

TEST(PlanLayouts, BadLayoutsNameWhatToChange) {
  Cluster c = cluster_from_string(
      "[cluster]\nnodes = 2\ngpus_per_node = 4\npeak_tflops = 100\nmemory_gb = 16\nintra_node_gbps = 100\n"
      "inter_node_gbps = 10\nintra_node_latency_us = 5\ninter_node_latency_us = 10\n");
  RunShape run;
  run.model = {8, 1024, 16, 512, 32000};
  run.global_batch = 16;
  EXPECT_NE(usage_error_of([&] { predict(run, c, {1, 1, 8}); }).find("larger than a node"), std::string::npos);
  EXPECT_NE(usage_error_of([&] { predict(run, c, {4, 1, 4}); }).find("needs 16 accelerators"), std::string::npos);
  PlanLayout too_many_chunks{1, 4, 1};  // 16 chunks for 8 layers + the two ends
  too_many_chunks.schedule = "interleaved", too_many_chunks.virtual_stages = 4, too_many_chunks.microbatch_size = 4;
  EXPECT_NE(usage_error_of([&] { predict(run, c, too_many_chunks); }).find("is more than the model's blocks"),
            std::string::npos);
  PlanLayout zero3_pipeline{2, 2, 1, 3};
  EXPECT_NE(usage_error_of([&] { predict(run, c, zero3_pipeline); }).find("zero 1"), std::string::npos);
  // A model that fits no layout: the search reports the nearest miss.
  run.model = {96, 16384, 128, 2048, 51200};
  const SearchResult r = search_layouts(run, c);
  EXPECT_FALSE(r.any_fits());
  EXPECT_GT(r.nearest_miss.memory_over_gb, 0);
}

TEST(PlanComm, GroupsCrossNodesByRankOrder) {
  Cluster c;
  c.gpus_per_node = 8;
  EXPECT_FALSE((GroupSpan{8, 1}).crosses_nodes(c));   // tp = 8
  EXPECT_TRUE((GroupSpan{2, 8}).crosses_nodes(c));    // dp = 2 with tp = 8
  EXPECT_FALSE((GroupSpan{4, 2}).crosses_nodes(c));   // dp = 4 with tp = 2: one node
  const CommCost comm{c};
  // Ring all-reduce: 2 (n-1)/n S / beta + 2 (n-1) alpha.
  EXPECT_NEAR(comm.all_reduce_s(300e9, {8, 1}), 2 * 7.0 / 8 * 1.0 + 14 * 5e-6, 1e-9);
  EXPECT_NEAR(comm.reduce_scatter_s(25e9, {2, 8}), 0.5 + 10e-6, 1e-9);
}

// A pipeline's predicted bubble follows its schedule: interleaving shrinks it.
TEST(PlanPipeline, InterleavingShrinksTheSimulatedBubble) {
  const Cluster c = one_selene_node();
  RunShape run = gpt_6_7b(16);
  PlanLayout one{1, 8, 1, 0, 1, "1f1b", 1, true};
  PlanLayout inter{1, 8, 1, 0, 1, "interleaved", 2, true};
  const Prediction a = predict(run, c, one), b = predict(run, c, inter);
  EXPECT_GT(a.time.bubble, 0);
  EXPECT_LT(b.time.bubble, 0.7 * a.time.bubble);
  // 1F1B's bubble fraction is (p-1)/(m+p-1) of the step's pipeline time.
  const double fraction = a.time.bubble / (a.time.bubble + a.time.compute + a.time.tp_comm);
  EXPECT_NEAR(fraction, 7.0 / (16 + 7), 0.03);
}

// How the Selene file's gemm_efficiency and gemm_half_dim were found: the
// pair whose best predicted layouts (closed-form bubble) match the two
// calibration rows of Megatron-LM's Table 1 (1.7B and 1T). Run by hand:
//   paratorch_plan_tests --gtest_also_run_disabled_tests --gtest_filter=*Calibrate*
TEST(PlanThroughput, DISABLED_CalibrateSeleneOnTwoRows) {
  struct Row { int heads, hidden, layers, tp, pp, gpus, batch; double tflops; };
  const Row rows[] = {{24, 2304, 24, 1, 1, 32, 512, 137}, {160, 25600, 128, 8, 64, 3072, 3072, 163}};
  Cluster base = load_cluster(kSelene);
  double best_e = 0, best_h = 0, best_err = 1e300;
  for (double e = 0.40; e <= 1.0001; e += 0.01)
    for (double h = 0; h <= 4000; h += 25) {
      double err = 0;
      for (const auto& r : rows) {
        RunShape run;
        run.model = {r.layers, r.hidden, r.heads, 2048, 51200};
        run.global_batch = r.batch;
        run.precision = run.reduce_precision = "fp16";
        Cluster c = base;
        c.nodes = r.gpus / c.gpus_per_node, c.gemm_efficiency = e, c.gemm_half_dim = h;
        SearchOptions o;
        o.tp = r.tp, o.pp = r.pp, o.zero = 0, o.recompute = 1, o.simulated = 0;
        double best = 0;
        try {
          for (const auto& p : search_layouts(run, c, o).ranked) best = std::max(best, p.tflops_per_gpu);
        } catch (const UsageError&) {
        }
        err += std::pow(std::log(std::max(best, 1e-9) / r.tflops), 2);
      }
      if (err < best_err) best_err = err, best_e = e, best_h = h;
    }
  std::printf("gemm_efficiency = %.2f\ngemm_half_dim = %.0f\n(rms log error %.4f)\n", best_e, best_h,
              std::sqrt(best_err / 2));
}

// Transfers cost their time in the replay: on the critical path of a
// 4-stage GPipe step, the fill and the drain each cross 3 boundaries.
// The zero-bubble schedules in the planner: zb-h1's simulated idle time is
// about a third of 1F1B's (I = W = F), the closed form agrees, zb-v keeps
// 1F1B's activation memory (2p half-stage chunks), and recompute is refused
// as the engine refuses activation checkpointing with them.
TEST(PlanPipeline, ZeroBubbleSchedulesShrinkTheBubbleAtOneFOneBsMemory) {
  const Cluster c = one_selene_node();
  RunShape run = gpt_6_7b(16);
  const PlanLayout one{1, 8, 1, 0, 1, "1f1b", 1, false}, h1{1, 8, 1, 0, 1, "zb-h1", 1, false},
      v{1, 8, 1, 0, 1, "zb-v", 1, false};
  const Prediction a = predict(run, c, one), b = predict(run, c, h1), d = predict(run, c, v);
  EXPECT_GT(a.time.bubble, 0);
  EXPECT_LT(b.time.bubble, 0.45 * a.time.bubble);
  EXPECT_LT(d.time.bubble, b.time.bubble);
  EXPECT_LT(b.step_s, a.step_s);
  EXPECT_NEAR(predict(run, c, h1, false).time.bubble, b.time.bubble, 0.2 * b.time.bubble);
  EXPECT_NEAR(d.memory.activations, a.memory.activations, 0.05 * a.memory.activations);
  PlanLayout recompute = h1;
  recompute.recompute = true;
  EXPECT_NE(usage_error_of([&] { predict(run, c, recompute); }).find("do not combine with activation checkpointing"),
            std::string::npos);
}

// The search tries zb-h1 and zb-v beside the other schedules: with
// recomputation off (they do not combine with it) and pp fixed, zb-v's
// half-forward skew beats 1F1B's and interleaving's idle time at the same
// activation memory, so it is the pick; asked for by name, it is the only
// schedule returned; and a V of more chunks than the model has blocks is
// refused, counting its two chunks per rank.
TEST(PlanSearch, ConsidersTheZeroBubbleSchedules) {
  const Cluster c = one_selene_node();
  RunShape run = gpt_6_7b(32);
  SearchOptions o;
  o.pp = 8, o.tp = 1, o.zero = 0, o.recompute = 0, o.microbatch_size = 1;
  const SearchResult free = search_layouts(run, c, o);
  ASSERT_TRUE(free.any_fits());
  EXPECT_EQ(free.ranked.front().layout.schedule, "zb-v") << contract_line("", free.ranked.front());
  bool saw_h1 = false, saw_1f1b = false;
  for (const auto& p : free.ranked) saw_h1 |= p.layout.schedule == "zb-h1", saw_1f1b |= p.layout.schedule == "1f1b";
  EXPECT_TRUE(saw_h1 && saw_1f1b) << "the search should rank zb-h1 and 1f1b too";
  o.schedule = "zb-h1";
  const SearchResult named = search_layouts(run, c, o);
  ASSERT_TRUE(named.any_fits());
  for (const auto& p : named.ranked) EXPECT_EQ(p.layout.schedule, "zb-h1");
  run.model = {8, 1024, 16, 512, 32000};
  EXPECT_NE(usage_error_of([&] {
              predict(run, c, {1, 8, 1, 0, 1, "zb-v", 1, false});
            }).find("zb-v keeps two per rank"),
            std::string::npos);
}

TEST(PlanPipeline, SimulatedTransfersLengthenTheStep) {
  const auto schedule = pipeline::make_schedule("gpipe", {4, 4, 1});
  const double without = pipeline::simulate(schedule, {1, 2, 0}).makespan;
  const double with = pipeline::simulate(schedule, {1, 2, 0.25}).makespan;
  EXPECT_NEAR(with - without, 2 * 3 * 0.25, 1e-9);
}

// The planner's own pick for each of Megatron-LM's Table 1 runs (the same
// model, batch and number of GPUs, every layout searched) beside the
// published tp and pp: the pick is predicted at least as fast (within the
// closed-form pass's ranking error), and the table in docs/plan.md says
// where it differs and why.
TEST(PlanSearch, MegatronTablePicksAtLeastThePublishedLayout) {
  struct Row { double billions; int heads, hidden, layers, tp, pp, gpus, batch; };
  const Row rows[] = {{1.7, 24, 2304, 24, 1, 1, 32, 512},        {7.5, 32, 4096, 36, 4, 1, 128, 512},
                      {39.1, 64, 8192, 48, 8, 2, 512, 1536},     {145.6, 96, 12288, 80, 8, 8, 1536, 2304},
                      {529.6, 128, 20480, 105, 8, 35, 2520, 2520}, {1008.0, 160, 25600, 128, 8, 64, 3072, 3072}};
  const Cluster selene = load_cluster(kSelene);
  for (const auto& r : rows) {
    RunShape run;
    run.model = {r.layers, r.hidden, r.heads, 2048, 51200};
    run.global_batch = r.batch;
    run.precision = run.reduce_precision = "fp16";
    Cluster c = selene;
    c.nodes = r.gpus / c.gpus_per_node;
    SearchOptions published;
    published.tp = r.tp, published.pp = r.pp;
    const SearchResult fixed = search_layouts(run, c, published), free = search_layouts(run, c);
    ASSERT_TRUE(fixed.any_fits() && free.any_fits()) << r.billions << "B";
    const Prediction &a = fixed.ranked.front(), &b = free.ranked.front();
    std::printf("%7.1fB published tp=%d pp=%d: %.1f TFLOP/s/GPU (%s)\n         planner's pick: %.1f (%s)\n",
                r.billions, r.tp, r.pp, a.tflops_per_gpu, contract_line("", a).c_str(), b.tflops_per_gpu,
                contract_line("", b).c_str());
    EXPECT_GE(b.tokens_per_s, 0.97 * a.tokens_per_s) << r.billions << "B";
  }
}
