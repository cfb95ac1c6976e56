// tests/plan/calibrate_test.cpp — measuring this machine for the planner
// (src/plan/calibrate.cpp): the fits recover the curves they fit, a
// calibration writes a cluster file that reads back, and the cost model's
// pieces that local runs lean on (the mlp's shape, ranks sharing cores).
#include <gtest/gtest.h>

#include "models/model.h"
#include "plan/calibrate.h"
#include "plan/predict.h"
#include <paratorch/errors.h>

#include <cmath>

using namespace paratorch;
using namespace paratorch::plan;

// Samples made by eff(n) = 0.8 n / (n + 40) against a peak of 100 GFLOP/s:
// the fit gives back 0.8 and 40.
TEST(PlanCalibrate, GemmFitRecoversTheCurve) {
  const double peak = 100e9;
  std::vector<GemmSample> samples;
  for (int64_t n : {16, 32, 64, 128, 512}) {
    GemmSample g{2048, 1024, n, 1, 0};
    g.flops_per_s = peak * 0.8 * static_cast<double>(n) / (static_cast<double>(n) + 40);
    samples.push_back(g);
  }
  const auto [efficiency, half_dim] = fit_gemm_curve(samples, peak);
  EXPECT_NEAR(efficiency, 0.8, 1e-9);
  EXPECT_NEAR(half_dim, 40, 1e-6);
  // Products faster than the peak cannot make the efficiency exceed 1.
  for (auto& g : samples) g.flops_per_s *= 2;
  EXPECT_LE(fit_gemm_curve(samples, peak).first, 1.0);
}

// All-reduces over 4 ranks and transfers, timed by the alpha-beta model
// with alpha = 3 us and beta = 5 GB/s: the fit gives back both.
TEST(PlanCalibrate, LinkFitRecoversAlphaAndBeta) {
  const double alpha = 3e-6, beta = 5e9;
  std::vector<CommSample> samples;
  for (double bytes : {4096.0, 65536.0, 1048576.0, 8388608.0}) {
    samples.push_back({false, 4, bytes, 2 * 3 * alpha + 2 * 3.0 / 4 * bytes / beta});
    samples.push_back({true, 2, bytes, alpha + bytes / beta});
  }
  const auto [a, b] = fit_alpha_beta(samples);
  EXPECT_NEAR(a, alpha, 1e-12);
  EXPECT_NEAR(b / beta, 1, 1e-9);
  EXPECT_THROW(fit_alpha_beta({samples[0]}), UsageError);
}

// One rank, a small gpt: every fitted key is positive, the links keep their
// defaults, and the file written reads back as the same cluster.
TEST(PlanCalibrate, WritesAClusterFileThatReadsBack) {
  CalibrateOptions o;
  o.model = {2, 64, 4, 32, 128};
  o.microbatch_tokens = 128;
  o.ranks_per_node = 4;
  o.cores_per_node = 2;
  o.memory_gb = 3;
  o.min_seconds = 0.002;
  o.rounds = 3;
  const Calibration cal = calibrate(o, nullptr);
  EXPECT_GE(cal.gemms.size(), 6u);
  const Cluster& c = cal.cluster;
  EXPECT_GT(c.peak_tflops.at("fp32"), 0);
  EXPECT_GT(c.gemm_efficiency, 0);
  EXPECT_LE(c.gemm_efficiency, 1);
  EXPECT_GT(c.memory_gbps, 0);
  EXPECT_EQ(c.intra_node_gbps, Cluster{}.intra_node_gbps);
  const std::string text = cluster_toml(cal, "fp32");
  EXPECT_NE(text.find("Links: not measured"), std::string::npos) << text;
  const Cluster back = cluster_from_string(text);
  EXPECT_EQ(back.gpus_per_node, 4);
  EXPECT_EQ(back.cores_per_node, 2);
  EXPECT_NEAR(back.peak_tflops.at("fp32") / c.peak_tflops.at("fp32"), 1, 1e-3);
  EXPECT_NEAR(back.memory_gbps / c.memory_gbps, 1, 1e-3);
  EXPECT_NEAR(back.gemm_half_dim, c.gemm_half_dim, 1e-3 * c.gemm_half_dim + 1e-3);
  o.precision = "fp8";
  EXPECT_THROW(o.validate(), UsageError);
}

// The mlp's parameter formula counts what the bundled mlp holds.
TEST(PlanModel, MlpParametersMatchTheBundledModel) {
  models::ModelConfig config;
  config.name = "mlp";
  config.n_layers = 3;
  config.d_model = 48;
  config.d_in = 20;
  config.n_classes = 7;
  auto model = models::make_model(config);
  int64_t held = 0;
  for (const auto& p : model->parameters()) held += p.numel();
  EXPECT_DOUBLE_EQ(ModelShape::from(config).parameters(), static_cast<double>(held));
  config.name = "cnn";
  EXPECT_THROW(ModelShape::from(config), UsageError);
}

// Four ranks on a node of two cores share them: dp = 4 takes about what
// dp = 2 does (half the batch each, half a core each), not half of it; on
// a node with a core per rank it takes about half.
TEST(PlanModel, RanksSharingCoresTakeTheNodesComputeOverItsCores) {
  Cluster c;
  c.nodes = 1, c.gpus_per_node = 4, c.cores_per_node = 2;
  c.peak_tflops["fp32"] = 0.1;
  c.memory_gb = 8, c.memory_gbps = 10, c.gemm_efficiency = 1, c.gemm_half_dim = 10;
  c.intra_node_gbps = c.inter_node_gbps = 1000;
  c.intra_node_latency_us = c.inter_node_latency_us = 0;
  RunShape run;
  run.model = {4, 256, 4, 64, 512};
  run.global_batch = 32;
  run.precision = run.reduce_precision = "fp32";
  auto step = [&](const Cluster& cluster, PlanLayout L) {
    L.microbatch_size = run.global_batch / L.dp;
    return predict(run, cluster, L).step_s;
  };
  const double dp2 = step(c, {2, 1, 1}), dp4 = step(c, {4, 1, 1});
  EXPECT_NEAR(dp4 / dp2, 1, 0.1);
  Cluster own = c;
  own.cores_per_node = 0;
  EXPECT_NEAR(step(own, {4, 1, 1}) / dp2, 0.5, 0.1);
  // A pipeline's ranks leave their cores while they wait: pp = 4 on two
  // cores costs the mean compute twice over, not its busiest rank's.
  PlanLayout pp4{1, 4, 1};
  pp4.microbatch_size = 4;
  pp4.schedule = "1f1b";
  const Prediction shared = predict(run, c, pp4), alone = predict(run, own, pp4);
  EXPECT_GT(shared.step_s, 1.3 * alone.step_s);
  EXPECT_LT(shared.step_s, 2.0 * alone.step_s);
}
