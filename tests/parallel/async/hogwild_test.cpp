// tests/parallel/async/hogwild_test.cpp — paratorch::hogwild on a user's
// module: threads sharing one matrix-factorization model converge, every step
// is taken exactly once, and bad input is refused with the option's name.
#include <gtest/gtest.h>

#include "mf_fixture.h"
#include <paratorch/async.h>
#include <paratorch/errors.h>

#include <atomic>

using namespace mf_fixture;

TEST(Hogwild, ThreadsSharingOneModelConverge) {
  auto ratings = true_ratings();
  Mf model;
  const double before = rmse(model, ratings);
  paratorch::HogwildOptions options;
  options.steps = 600;
  options.lr = 4.0;  // per-row gradients of a 32-sample mean are ~1/32 of a row's own
  std::atomic<int64_t> calls{0};
  options.on_step = [&](int64_t, double, double) { ++calls; };
  auto report = paratorch::hogwild(model.ptr(), 3, [&](int64_t s) {
    auto [ids, y] = batch(s, ratings);
    return torch::mse_loss(model->forward(ids), y);
  }, options);
  const double after = rmse(model, ratings);
  EXPECT_GT(before, 0.5);
  EXPECT_LT(after, 0.15) << "from " << before;
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
