// tests/train/run_cadence_test.cpp — the one set of rules every runner uses
// for metrics lines, mid-run validations, checkpoints and the traced steps.
#include <gtest/gtest.h>

#include "train/run_cadence.h"

#include <vector>

using paratorch::train::RunCadence;
using paratorch::train::TrainSection;

namespace {

std::vector<int64_t> steps_where(const RunCadence& c, bool (RunCadence::*rule)(int64_t) const) {
  std::vector<int64_t> out;
  for (int64_t s = 0; s <= c.steps(); ++s)
    if ((c.*rule)(s) && s > 0) out.push_back(s);
  return out;
}

TrainSection train(int steps, int log_every, int checkpoint_every) {
  TrainSection t;
  t.steps = steps;
  t.log_every = log_every;
  t.checkpoint_every = checkpoint_every;
  return t;
}

}  // namespace

TEST(RunCadence, LinesEveryLogEveryAndAtTheLastStep) {
  const RunCadence c(train(23, 5, 0));
  EXPECT_EQ(steps_where(c, &RunCadence::logs), (std::vector<int64_t>{5, 10, 15, 20, 23}));
}

TEST(RunCadence, ValidatesEveryFiveLinesButNotAtTheEnd) {
  const RunCadence c(train(100, 4, 0));
  EXPECT_EQ(steps_where(c, &RunCadence::validates_mid_run), (std::vector<int64_t>{20, 40, 60, 80}));
  EXPECT_FALSE(c.validates_mid_run(0));
  const RunCadence exact(train(40, 4, 0));  // the last step is the end's validation, not a mid-run one
  EXPECT_EQ(steps_where(exact, &RunCadence::validates_mid_run), (std::vector<int64_t>{20}));
}

TEST(RunCadence, CheckpointsEveryNAndAtTheLastStep) {
  EXPECT_EQ(steps_where(RunCadence(train(25, 5, 10)), &RunCadence::checkpoints), (std::vector<int64_t>{10, 20, 25}));
  EXPECT_EQ(steps_where(RunCadence(train(25, 5, 0)), &RunCadence::checkpoints), (std::vector<int64_t>{25}));
  // A server's progress jumps: a checkpoint is due when it crosses a multiple.
  const RunCadence c(train(100, 5, 10));
  EXPECT_TRUE(c.checkpoints_between(8, 13));
  EXPECT_FALSE(c.checkpoints_between(10, 19));
  EXPECT_TRUE(c.checkpoints_between(19, 20));
  EXPECT_FALSE(RunCadence(train(100, 5, 0)).checkpoints_between(8, 50));
}

TEST(RunCadence, TracesTheFirstTwentySteps) {
  EXPECT_TRUE(RunCadence::traces(0));
  EXPECT_TRUE(RunCadence::traces(RunCadence::kTracedSteps - 1));
  EXPECT_FALSE(RunCadence::traces(RunCadence::kTracedSteps));
}
