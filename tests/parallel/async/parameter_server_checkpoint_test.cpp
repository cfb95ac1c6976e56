// tests/parallel/async/parameter_server_checkpoint_test.cpp — a parameter
// server's checkpoint (ParameterServer::training_state / load): the servers'
// rows of the parameters and of Adam's state join into the whole tensors a
// single process holds at the same step; the job resumed from it ends where
// the uninterrupted one does; and a plain module and torch::optim::Adam
// resumed from it end there too. At np3 one server holds everything; at
// np4 two servers split each table by rows.
#include <gtest/gtest.h>

#include "mf_fixture.h"
#include "mpi_test_env.h"
#include <paratorch/async.h>
#include <paratorch/checkpoint.h>
#include <paratorch/errors.h>

#include <filesystem>

using paratorch::ParameterServer;
using paratorch::ParameterServerOptions;
using namespace mf_fixture;

namespace {
namespace fs = std::filesystem;

// Bulk-synchronous steps [from, to) in lockstep: workers train on their
// shares of the global batch, servers apply each step.
void bsp_steps(ParameterServer& ps, Mf& model, int64_t from, int64_t to, const torch::Tensor& ratings) {
  for (int64_t s = from; s < to; ++s) {
    if (ps.is_server()) {
      ps.serve_step();
      continue;
    }
    ps.pull();
    auto [ids, y] = share(batch(s, ratings), ps.worker_index(), ps.workers());
    auto loss = torch::mse_loss(model->forward(ids), y);
    loss.backward();
    ps.push(loss.item<double>());
  }
}

// The same steps in one process on the global batches.
void one_process_steps(Mf& model, torch::optim::Optimizer& opt, int64_t from, int64_t to,
                       const torch::Tensor& ratings) {
  for (int64_t s = from; s < to; ++s) {
    auto [ids, y] = batch(s, ratings);
    opt.zero_grad();
    torch::mse_loss(model->forward(ids), y).backward();
    opt.step();
  }
}

void expect_close(const std::map<std::string, torch::Tensor>& got, const std::map<std::string, torch::Tensor>& want,
                  double rtol) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, w] : want) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.count(name));
    const auto g = got.at(name).to(w.dtype());
    EXPECT_LE((g - w).abs().max().item<double>(), rtol * std::max(1.0, w.abs().max().item<double>()));
  }
}

std::map<std::string, torch::Tensor> parameters_of(Mf& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model->named_parameters()) out[item.key()] = item.value().detach().clone();
  return out;
}

}  // namespace

TEST(AsyncApi, BulkSynchronousCheckpointResumesInAnyLayout) {
  auto& world = test_world();
  ParameterServerOptions options;
  options.servers = world.size() - 2;
  const auto root =
      (fs::temp_directory_path() / ("paratorch_ps_checkpoint_np" + std::to_string(world.size()))).string();
  if (world.rank() == 0) fs::remove_all(root);
  world.comm()->barrier();
  const auto ratings = true_ratings();
  const int64_t half = 3, steps = 6;

  // One process: the state at step 3, and the parameters at step 6.
  Mf reference;
  auto ref_opt = make_adam(reference);
  one_process_steps(reference, *ref_opt, 0, half, ratings);
  const auto ref_state = paratorch::optimizer_state_by_name(*ref_opt, *reference);
  one_process_steps(reference, *ref_opt, half, steps, ratings);

  // The job: a checkpoint at step 3, then on to step 6.
  Mf model;
  ParameterServer ps(model.ptr(), make_adam(model), world.comm(), options);
  bsp_steps(ps, model, 0, half, ratings);
  const paratorch::TrainingState saved = ps.training_state(half);
  paratorch::save_checkpoint(root, saved, world.comm().get());
  EXPECT_EQ(saved.step, half);
  expect_close(saved.optimizer, ref_state, 1e-5);  // the servers' rows joined, step counts included
  bsp_steps(ps, model, half, steps, ratings);
  const auto uninterrupted = ps.full_parameters();
  expect_close(uninterrupted, parameters_of(reference), 1e-5);

  // Resumed: a fresh job (its module moved off the initial values, so the
  // checkpoint must replace them) from step 3 ends where the job did.
  Mf again;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : again->parameters()) p.add_(0.5);
  }
  ParameterServer resumed(again.ptr(), make_adam(again), world.comm(), options);
  resumed.load(paratorch::load_checkpoint(root));
  EXPECT_EQ(resumed.step(), half);
  bsp_steps(resumed, again, half, steps, ratings);
  expect_close(resumed.full_parameters(), uninterrupted, 1e-6);

  // Another layout: one process with torch::optim::Adam from the same checkpoint.
  Mf plain;
  auto plain_opt = make_adam(plain);
  const auto state = paratorch::load_checkpoint(root);
  paratorch::load_parameters(*plain, state.model);
  paratorch::load_optimizer_state(*plain_opt, *plain, state.optimizer);
  one_process_steps(plain, *plain_opt, half, steps, ratings);
  expect_close(parameters_of(plain), uninterrupted, 1e-5);
  if (ps.is_worker()) ps.finish();
  if (resumed.is_worker()) resumed.finish();
}

// A checkpoint that does not fit is refused on every rank, naming what is
// wrong: a parameter it lacks (every rank sees it), and optimizer state of
// the wrong shape (only the servers see it: the workers hear of it rather
// than wait for them).
TEST(AsyncApi, CheckpointThatDoesNotFitIsRefusedOnEveryRank) {
  auto& world = test_world();
  ParameterServerOptions options;
  options.servers = world.size() - 2;
  Mf model;
  ParameterServer ps(model.ptr(), make_adam(model), world.comm(), options);
  paratorch::TrainingState state;
  state.step = 2;
  for (const auto& item : model->named_parameters()) state.model[item.key()] = item.value().detach().clone();
  state.model.erase("item_bias");
  try {
    ps.load(state);
    ADD_FAILURE() << "a checkpoint without item_bias was accepted";
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("lacks parameter 'item_bias'"), std::string::npos) << e.what();
  }
  state.model["item_bias"] = model->item_bias.detach().clone();
  for (const char* kind : {"exp_avg", "exp_avg_sq"})
    state.optimizer[std::string("users.weight.") + kind] = torch::zeros({kUsers, 3});
  try {
    ps.load(state);
    ADD_FAILURE() << "optimizer state of the wrong shape was accepted";
  } catch (const paratorch::RuntimeFailure& e) {
    const std::string what = e.what();
    const bool named = what.find("has shape [") != std::string::npos,
               told = what.find("failed on server group rank") != std::string::npos;
    EXPECT_TRUE(ps.is_server() ? named || told : told) << what;
  }
}
