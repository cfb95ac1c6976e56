// tests/parallel/async/parameter_server_test.cpp — the public ParameterServer
// on a user's module: bulk-synchronous training equals one process (with
// Adam, and with plain SGD, which sees the gradient's scale), the
// stale-synchronous bound holds, asynchronous training converges, and bad
// input is refused with the option's name.
#include <gtest/gtest.h>

#include "mf_fixture.h"
#include "mpi_test_env.h"
#include <paratorch/async.h>
#include <paratorch/errors.h>

#include <chrono>
#include <thread>

using paratorch::ParameterServer;
using paratorch::ParameterServerOptions;
using namespace mf_fixture;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Trains `steps` steps through a parameter server; servers serve(), workers
// call `on_step(step)` around each step. Returns the RMSE of the result.
double train_ps(ParameterServerOptions options, int64_t steps, const std::function<void(ParameterServer&, int64_t)>& before_push = {}) {
  auto ratings = true_ratings();
  Mf model;
  auto opt = std::make_shared<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(0.05));
  ParameterServer ps(model.ptr(), opt, test_world().comm(), options);
  if (ps.is_server()) {
    ps.serve();
  } else {
    for (int64_t s = 0; s < steps; ++s) {
      ps.pull();
      auto [ids, y] = share(batch(s, ratings), ps.worker_index(), ps.workers());
      auto loss = torch::mse_loss(model->forward(ids), y);
      loss.backward();
      if (before_push) before_push(ps, s);
      ps.push(loss.item<double>());
    }
    ps.finish();
  }
  ps.load_into_module();
  return rmse(model, ratings);
}

}  // namespace

// Bulk-synchronous training through the parameter server against the same
// model trained in one process on the global batches: per-step losses (the
// mean of the workers' shares) and final parameters at 1e-5. Each worker
// splits its share into `micro` micro-batches and accumulates their
// gradients (loss / micro each) before one push, as a user short of memory
// would.
namespace {
using MakeOptimizer = std::function<std::shared_ptr<torch::optim::Optimizer>(Mf&)>;
void expect_bsp_equals_one_process(const MakeOptimizer& make_optimizer, int micro = 1) {
  const int size = test_world().size();
  ParameterServerOptions options;
  options.servers = size - 2;  // np3: 1 server; np4: 2 servers, the tables split by rows
  auto ratings = true_ratings();

  Mf reference;
  auto ref_opt = make_optimizer(reference);
  Mf model;
  ParameterServer ps(model.ptr(), make_optimizer(model), test_world().comm(), options);
  ASSERT_EQ(ps.workers(), 2);
  const int64_t steps = 6;
  for (int64_t s = 0; s < steps; ++s) {
    auto global = batch(s, ratings);
    ref_opt->zero_grad();
    auto ref_loss = torch::mse_loss(reference->forward(global.first), global.second);
    ref_loss.backward();
    ref_opt->step();
    double mine = 0;  // this worker's share of the global mean loss
    if (ps.is_server()) {
      ps.serve_step();
    } else {
      ps.pull();
      auto [ids, y] = share(global, ps.worker_index(), ps.workers());
      for (int m = 0; m < micro; ++m) {
        auto [mids, my] = share({ids, y}, m, micro);
        auto loss = torch::mse_loss(model->forward(mids), my) / micro;
        loss.backward();
        mine += loss.item<double>();
      }
      ps.push(mine);
      mine /= ps.workers();
    }
    // Every rank is past step s here (servers applied it, workers pushed it),
    // so a collective cannot cross the protocol's messages.
    auto loss = torch::tensor({mine}, torch::kDouble);
    test_world().comm()->all_reduce(loss, paratorch::ReduceOp::kSum);
    EXPECT_NEAR(loss.item<double>(), ref_loss.item<double>(), 1e-5 * ref_loss.item<double>()) << "step " << s;
  }
  if (ps.is_worker()) ps.finish();
  const auto full = ps.full_parameters();
  ASSERT_EQ(full.size(), reference->named_parameters().size());
  for (const auto& item : reference->named_parameters()) {
    SCOPED_TRACE(item.key());
    const auto& got = full.at(item.key());
    const auto& want = item.value();
    EXPECT_LT((got - want).norm().item<double>(), 1e-5 * want.norm().item<double>());
    EXPECT_GT((want - Mf()->named_parameters()[item.key()]).abs().max().item<double>(), 1e-3) << "it must have moved";
  }
  if (ps.is_server()) EXPECT_EQ(ps.stats().updates, steps);
}
}  // namespace

TEST(AsyncApi, BulkSynchronousEqualsOneProcess) { expect_bsp_equals_one_process(make_adam); }

// Adam hardly sees the gradient's scale; plain SGD (no momentum, no weight
// decay, no clip) updates by lr x the averaged gradient, so a server that
// summed the W pushes, or a worker that pushed a scaled gradient, moves the
// parameters W times (or k times) too far and fails at 1e-5.
namespace {
MakeOptimizer plain_sgd() {
  return [](Mf& m) { return std::make_shared<torch::optim::SGD>(m->parameters(), torch::optim::SGDOptions(0.5)); };
}
}  // namespace
TEST(AsyncApi, BulkSynchronousSgdKeepsTheGradientScale) { expect_bsp_equals_one_process(plain_sgd()); }
TEST(AsyncApi, BulkSynchronousSgdWithMicroBatchesKeepsTheGradientScale) {
  expect_bsp_equals_one_process(plain_sgd(), 2);
}

// Staleness k: a worker's pull for step t returns only after every worker
// pushed step t - k - 1. Worker 1 straggles, so worker 0 runs into the bound;
// timestamps of both (one node: one steady clock) show it is never crossed,
// and that worker 0 did run ahead (the bound, not lockstep, held it).
TEST(AsyncApi, StaleSynchronousRespectsTheBound) {
  const int size = test_world().size();
  ParameterServerOptions options;
  options.staleness = 2;
  const int64_t steps = 12, k = options.staleness;
  auto ratings = true_ratings();
  Mf model;
  auto opt = std::make_shared<torch::optim::SGD>(model->parameters(), 0.5);
  ParameterServer ps(model.ptr(), opt, test_world().comm(), options);
  // Per rank: pull-return times, then push-start times.
  auto times = torch::zeros({2 * steps}, torch::kDouble);
  if (ps.is_server()) {
    ps.serve();
    EXPECT_LE(ps.stats().max_lead, k);
    EXPECT_EQ(ps.stats().max_lead, k) << "the straggler should have let the other worker reach the bound";
  } else {
    for (int64_t s = 0; s < steps; ++s) {
      ps.pull();
      times[s] = now_s();
      auto [ids, y] = share(batch(s, ratings), ps.worker_index(), ps.workers());
      torch::mse_loss(model->forward(ids), y).backward();
      if (ps.worker_index() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      times[steps + s] = now_s();
      ps.push();
    }
    ps.finish();
  }
  auto all = torch::zeros({size * 2 * steps}, torch::kDouble);
  test_world().comm()->all_gather(all, times);
  auto fast = all.narrow(0, options.servers * 2 * steps, 2 * steps);
  auto slow = all.narrow(0, (options.servers + 1) * 2 * steps, 2 * steps);
  bool ahead = false;
  for (int64_t t = k + 1; t < steps; ++t) {
    const double pulled = fast[t].item<double>(), slow_pushed = slow[steps + t - k - 1].item<double>();
    EXPECT_GE(pulled, slow_pushed) << "worker 0's pull for step " << t << " returned before worker 1 pushed step "
                                   << t - k - 1;
    ahead = ahead || pulled < slow[steps + t - 1].item<double>();
  }
  EXPECT_TRUE(ahead) << "worker 0 never ran ahead of the straggler";
}

// Fully asynchronous: no waiting, stale gradients; it still converges to
// near the noise floor (0.05) and close to the bulk-synchronous result.
TEST(AsyncApi, AsynchronousConverges) {
  ParameterServerOptions bsp, async;
  async.staleness = -1;
  const double start = [] { Mf m; return rmse(m, true_ratings()); }();
  const double sync = train_ps(bsp, 150);
  const double free = train_ps(async, 150, [](ParameterServer& ps, int64_t) {
    if (ps.worker_index() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_GT(start, 0.5);
  EXPECT_LT(sync, 0.15);
  EXPECT_LT(free, 0.15);
  EXPECT_LT(std::abs(free - sync), 0.05);
}

TEST(AsyncApi, BadInputNamesTheOption) {
  const int size = test_world().size();
  auto expect_usage = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no UsageError; wanted one saying: " << needle;
    } catch (const paratorch::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto build = [&](ParameterServerOptions o, Mf model) {
    ParameterServer ps(model.ptr(), std::make_shared<torch::optim::SGD>(model->parameters(), 0.1),
                       test_world().comm(), o);
  };
  ParameterServerOptions o;
  o.staleness = -2;
  expect_usage([&] { build(o, Mf()); }, "ParameterServerOptions::staleness = -2");
  o = {};
  o.servers = size;  // no worker left
  expect_usage([&] { build(o, Mf()); }, "ParameterServerOptions::servers = " + std::to_string(size) + " leaves no worker");
  o.servers = size + 1;
  expect_usage([&] { build(o, Mf()); }, "leaves no worker");
  o.servers = 0;
  expect_usage([&] { build(o, Mf()); }, "ParameterServerOptions::servers = 0");
  Mf frozen;
  for (auto& p : frozen->parameters()) p.requires_grad_(false);
  expect_usage([&] { build({}, frozen); }, "no parameter that requires a gradient");

  // A loss that never reaches item_bias: the push names it, and the job
  // still ends (the worker finishes, the server's serve() returns).
  auto ratings = true_ratings();
  Mf model;
  ParameterServer ps(model.ptr(), std::make_shared<torch::optim::SGD>(model->parameters(), 0.1), test_world().comm());
  if (ps.is_server()) {
    expect_usage([&] { ps.pull(); }, "is for worker ranks");
    ps.serve();
  } else {
    expect_usage([&] { ps.serve(); }, "is for server ranks");
    ps.pull();
    auto [ids, y] = batch(0, ratings);
    auto u = ids.select(1, 0), i = ids.select(1, 1);
    auto partial = (model->users(u) * model->items(i)).sum(1) + model->user_bias.index_select(0, u);
    torch::mse_loss(partial, y).backward();
    expect_usage([&] { ps.push(); }, "parameter 'item_bias' received no gradient");
    ps.finish();
  }
}
