// tests/parallel/async/hogwild_test.cpp — paratorch::hogwild on a user's
// module: threads sharing one matrix-factorization model converge, every step
// is taken exactly once, and bad input is refused with the option's name.
#include <gtest/gtest.h>

#include "mf_fixture.h"
#include <paratorch/async.h>
#include <paratorch/errors.h>

#include <atomic>

using namespace mf_fixture;

// Hogwild's threads race, so its result varies run to run; the check is that
// three racing threads land where one thread running the same steps does.
// lr 1.0 keeps the stale updates stable: measured over 20 runs of 600 steps,
// one thread 0.0450, three threads 0.0451-0.0473 (the noise floor is 0.05);
// at lr 4.0 three threads landed anywhere in 0.065-0.17 and sometimes diverged.
TEST(Hogwild, ThreadsSharingOneModelConverge) {
  auto ratings = true_ratings();
  paratorch::HogwildOptions options;
  options.steps = 600;
  options.lr = 1.0;  // per-row gradients of a 32-sample mean are ~1/32 of a row's own
  auto train = [&](Mf& model, int threads, std::atomic<int64_t>& calls) {
    options.on_step = [&](int64_t, double, double) { ++calls; };
    return paratorch::hogwild(model.ptr(), threads, [&](int64_t s) {
      auto [ids, y] = batch(s, ratings);
      return torch::mse_loss(model->forward(ids), y);
    }, options);
  };
  Mf alone;
  std::atomic<int64_t> alone_calls{0};
  train(alone, 1, alone_calls);
  const double sequential = rmse(alone, ratings);
  ASSERT_LT(sequential, 0.06) << "one thread should learn the rank-2 ratings to their noise";

  Mf model;
  const double before = rmse(model, ratings);
  std::atomic<int64_t> calls{0};
  auto report = train(model, 3, calls);
  const double after = rmse(model, ratings);
  EXPECT_GT(before, 0.5);
  EXPECT_LT(after, 1.25 * sequential) << "from " << before << "; one thread reached " << sequential;
  int64_t total = 0;
  for (auto n : report.steps_per_thread) total += n;
  EXPECT_EQ(total, options.steps);
  EXPECT_EQ(calls.load(), options.steps);
  EXPECT_EQ(report.steps_per_thread.size(), 3u);
}

TEST(Hogwild, BadInputNamesTheOption) {
  auto ratings = true_ratings();
  Mf model;
  auto loss_of = [&](int64_t s) {
    auto [ids, y] = batch(s, ratings);
    return torch::mse_loss(model->forward(ids), y);
  };
  auto expect_usage = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no UsageError; wanted one saying: " << needle;
    } catch (const paratorch::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_usage([&] { paratorch::hogwild(model.ptr(), 0, loss_of); }, "hogwild threads = 0");
  paratorch::HogwildOptions o;
  o.lr = -1;
  expect_usage([&] { paratorch::hogwild(model.ptr(), 2, loss_of, o); }, "HogwildOptions::lr");
  o = {};
  o.grad_clip = -1;
  expect_usage([&] { paratorch::hogwild(model.ptr(), 2, loss_of, o); }, "HogwildOptions::grad_clip");
  Mf frozen;
  for (auto& p : frozen->parameters()) p.requires_grad_(false);
  expect_usage([&] { paratorch::hogwild(frozen.ptr(), 2, loss_of); }, "no parameter that requires a gradient");
  // A loss built from another module: no gradient reaches this one.
  Mf other;
  expect_usage([&] {
    paratorch::hogwild(other.ptr(), 2, loss_of);
  }, "depends on no parameter of the module");
  // A non-finite loss is a runtime failure naming the options to change.
  o = {};
  o.steps = 3;
  try {
    paratorch::hogwild(model.ptr(), 2, [&](int64_t s) { return loss_of(s) * std::numeric_limits<double>::infinity(); }, o);
    ADD_FAILURE() << "no RuntimeFailure";
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("HogwildOptions::lr"), std::string::npos) << e.what();
  }
}
