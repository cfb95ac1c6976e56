// tests/train/hogwild_pace_test.cpp — the pace a Hogwild run's metrics lines
// show (async::StepPace): steps finish out of order, two at a time, yet no
// step's time is negative and the times add up to the run's wall time.
#include <gtest/gtest.h>

#include "train/hogwild_runner.h"

#include <vector>

using paratorch::async::StepPace;

TEST(HogwildPace, OutOfOrderStepsNeverTakeNegativeTimeAndSumToTheWallTime) {
  // Two threads from t = 10 s: step 1 finishes before step 0, step 3 before step 2.
  const std::vector<double> finished = {10.020, 10.010, 10.041, 10.030, 10.050, 10.062};
  StepPace pace(/*window=*/2, 10.0);
  double sum = 0;
  std::vector<double> ms;
  for (double t : finished) {
    ms.push_back(pace.ms(t));
    sum += ms.back();
  }
  for (size_t s = 0; s < ms.size(); ++s) EXPECT_GT(ms[s], 0) << "step " << s;
  // F = 20, 20, 41, 41, 50, 62 ms after the start; means over 2 steps.
  EXPECT_NEAR(ms[0], 20.0, 1e-6);
  EXPECT_NEAR(ms[1], 10.0, 1e-6);
  EXPECT_NEAR(ms[3], 10.5, 1e-6);
  EXPECT_NEAR(ms[5], 10.5, 1e-6);
  EXPECT_NEAR(sum, 62.0, 0.25 * 62.0) << "about the run's wall time";
}
