// tests/async/ps_convergence_test.cpp — asynchronous and stale-synchronous
// training reach synchronous training's loss for the same number of samples
// (docs/async.md's convergence check), a dead worker does not stop an asynchronous
// job, and Hogwild threads converge like one thread. Runs whole `paratorch
// train` jobs in process (Trainer), on 3 ranks: 1 server + 2 workers.
#include "train/trainer.h"

#include "mpi_test_env.h"
#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace paratorch::async {
namespace {
namespace fs = std::filesystem;

std::string scratch(const std::string& name) {
  const fs::path dir = fs::path(PARATORCH_TEST_SCRATCH) / name;
  if (test_world().rank() == 0) fs::remove_all(dir);
  test_world().comm()->barrier();
  return dir.string();
}

train::Config job(const std::string& model, const std::string& mode, int staleness, const std::string& out) {
  train::Config c;
  c.model.name = model;
  if (model == "mf") {
    c.model.n_users = 200;
    c.model.n_items = 100;
    c.model.n_factors = 8;
    c.data.source = "mf_synthetic";
    c.optim.lr = 0.05;
    c.train.steps = 120;
  } else {
    c.model.n_layers = 1;
    c.model.d_model = 32;
    c.model.d_in = 32;
    c.data.source = "synthetic";
    c.optim.lr = 3e-3;
    c.train.steps = 60;
  }
  c.data.global_batch = 48;
  c.optim.weight_decay = 0;
  c.optim.grad_clip = 0;  // ps workers clip their own pushes, sync the mean: equal only without clipping
  c.optim.warmup_steps = 5;
  c.parallel.mode = mode;
  c.parallel.staleness = staleness;
  c.train.log_every = 20;
  c.train.out_dir = out;
  c.comm.timeout_s = 30;
  c.validate();
  return c;
}

// The validation loss in the last metrics.jsonl line that has one (rank 0).
double last_val_loss(const std::string& out_dir) {
  std::ifstream in(out_dir + "/metrics.jsonl");
  std::string line, found;
  while (std::getline(in, line))
    if (line.find("\"val_loss\"") != std::string::npos) found = line;
  const auto at = found.find("\"val_loss\":");
  return at == std::string::npos ? NAN : std::atof(found.c_str() + at + 11);
}

// Synchronous dp=3, bulk-synchronous, SSP(2) and asynchronous ps: the same
// steps x 48 samples. Bulk-synchronous is synchronous SGD (1e-3: only float
// summation order differs); SSP(2) and asynchronous must reach sync's final
// validation loss within `tolerance` (relative) or better. (They take W = 2
// optimizer steps of half the batch per global step, so with these small
// learning rates they usually end lower.)
void expect_modes_agree(const std::string& model, double tolerance) {
  auto& world = test_world();
  const auto dir = scratch("converge_" + model);
  train::Trainer(world, job(model, "sync", 0, dir + "/sync")).run();
  const double sync = last_val_loss(dir + "/sync");
  const std::vector<int> stalenesses = {0, 2, -1};
  for (int k : stalenesses) {
    const auto result = train::Trainer(world, job(model, "ps", k, dir + "/ps" + std::to_string(k))).run();
    if (world.rank() != 0) continue;
    std::printf("%s: sync val loss %.4f, ps staleness %d val loss %.4f\n", model.c_str(), sync, k, result.final_loss);
    EXPECT_TRUE(std::isfinite(result.final_loss));
    if (k == 0) EXPECT_NEAR(result.final_loss, sync, 1e-3 * sync) << "bulk-synchronous is synchronous SGD";
    else EXPECT_LT(result.final_loss, (1 + tolerance) * sync) << "staleness " << k;
    EXPECT_NEAR(result.final_loss, last_val_loss(dir + "/ps" + std::to_string(k)), 1e-4);
  }
  world.comm()->barrier();
}

TEST(PsConvergence, MfAsyncAndSspReachSyncLoss) { expect_modes_agree("mf", 0.05); }
TEST(PsConvergence, MlpAsyncAndSspReachSyncLoss) { expect_modes_agree("mlp", 0.05); }

// A worker that stops dead does not stop an asynchronous job: the server
// declares it lost after [comm] timeout_s and the survivors finish.
TEST(PsFault, AsyncJobFinishesWithoutADeadWorker) {
  auto& world = test_world();
  const auto dir = scratch("fault");
  auto config = job("mf", "ps", -1, dir);
  config.train.steps = 40;
  config.comm.timeout_s = 2;
  const int victim = world.size() - 1;
  setenv("PARATORCH_PS_KILL", (std::to_string(victim) + ":10").c_str(), 1);
  const auto result = train::Trainer(world, config).run();
  unsetenv("PARATORCH_PS_KILL");
  if (world.rank() == 0) {
    EXPECT_TRUE(std::isfinite(result.final_loss));
    std::ifstream in(dir + "/metrics.jsonl");
    std::string line, last;
    while (std::getline(in, line)) last = line;
    EXPECT_NE(last.find("\"lost_workers\":1"), std::string::npos) << last;
    EXPECT_TRUE(fs::exists(dir + "/checkpoints/server-0/latest")) << "the server checkpoints its shard";
  }
  world.comm()->barrier();
}

// Hogwild: 2 threads sharing one parameter copy end where 1 thread does.
TEST(Hogwild, TwoThreadsConvergeLikeOne) {
  auto& world = test_world();
  if (world.size() != 1) GTEST_SKIP() << "hogwild runs in one process";
  const auto dir = scratch("hogwild");
  double loss[3] = {0, 0, 0};
  for (int threads : {1, 2}) {
    auto config = job("mf", "hogwild", 0, dir + "/t" + std::to_string(threads));
    config.optim.name = "sgd";
    config.optim.lr = 0.5;
    config.train.threads_per_rank = threads;
    loss[threads] = train::Trainer(world, config).run().final_loss;
  }
  std::printf("hogwild mf: 1 thread val loss %.4f, 2 threads %.4f\n", loss[1], loss[2]);
  EXPECT_LT(loss[1], 0.5);
  EXPECT_NEAR(loss[2], loss[1], 0.25 * loss[1]);
}

TEST(Hogwild, RefusesAdamw) {
  auto& world = test_world();
  if (world.size() != 1) GTEST_SKIP() << "hogwild runs in one process";
  auto config = job("mf", "hogwild", 0, scratch("hogwild_adamw"));
  EXPECT_THROW(train::Trainer(world, config).run(), UsageError);
}

}  // namespace
}  // namespace paratorch::async
