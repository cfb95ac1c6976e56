// tests/parallel/pipeline/schedule_test.cpp — the schedules as data: each list does
// every forward and backward exactly once, respects the dependencies, never
// deadlocks, bounds the activations in flight, and has the theoretical bubble.
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/simulator.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <map>
#include <tuple>

namespace paratorch::pipeline {
namespace {

struct Case {
  std::string name;
  int p, m, v;
};

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (int p : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 4, 8, 16}) {
      out.push_back({"gpipe", p, m, 1});
      out.push_back({"1f1b", p, m, 1});
      for (int v : {1, 2, 3})
        if (m % p == 0) out.push_back({"interleaved", p, m, v});
    }
  return out;
}

std::string label(const Case& c) {
  return c.name + " p=" + std::to_string(c.p) + " m=" + std::to_string(c.m) + " v=" + std::to_string(c.v);
}

TEST(PipelineSchedule, EveryForwardAndBackwardOncePerMicrobatchAndChunk) {
  for (const auto& c : all_cases()) {
    auto s = make_schedule(c.name, {c.p, c.m, c.v});
    ASSERT_EQ(s.ranks.size(), static_cast<size_t>(c.p));
    for (int r = 0; r < c.p; ++r) {
      std::map<std::tuple<int, int, int>, int> seen;  // (type, mb, chunk) -> count
      for (const auto& a : s.ranks[static_cast<size_t>(r)])
        if (is_compute(a.type)) ++seen[{static_cast<int>(a.type), a.microbatch, a.chunk}];
      EXPECT_EQ(seen.size(), static_cast<size_t>(2 * c.m * c.v)) << label(c) << " rank " << r;
      for (const auto& [key, count] : seen) EXPECT_EQ(count, 1) << label(c);
    }
  }
}

TEST(PipelineSchedule, TransfersBracketTheComputeTheyFeed) {
  auto s = make_schedule("1f1b", {3, 4, 1});
  // Middle rank: every forward is preceded by its receive and followed by its send.
  const auto& list = s.ranks[1];
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i].type == ActionType::kForward) {
      ASSERT_GT(i, 0u);
      ASSERT_LT(i + 1, list.size());
      EXPECT_EQ(list[i - 1], (Action{ActionType::kRecvActivation, list[i].microbatch, 0}));
      EXPECT_EQ(list[i + 1], (Action{ActionType::kSendActivation, list[i].microbatch, 0}));
    }
  // The first stage receives nothing, the last sends no activation.
  for (const auto& a : s.ranks[0]) EXPECT_NE(a.type, ActionType::kRecvActivation);
  for (const auto& a : s.ranks[2]) EXPECT_NE(a.type, ActionType::kSendActivation);
}

TEST(PipelineSchedule, SimulationRespectsDependenciesAndNeverDeadlocks) {
  for (const auto& c : all_cases()) {
    PipelineShape shape{c.p, c.m, c.v};
    SimResult sim;
    ASSERT_NO_THROW(sim = simulate(make_schedule(c.name, shape))) << label(c);
    // (forward?, mb, model stage) -> (start, end)
    std::map<std::tuple<bool, int, int>, std::pair<double, double>> when;
    for (int r = 0; r < c.p; ++r)
      for (const auto& t : sim.timeline[static_cast<size_t>(r)])
        when[{t.action.type == ActionType::kForward, t.action.microbatch, shape.model_stage(r, t.action.chunk)}] = {
            t.start, t.end};
    const int S = shape.model_stages();
    for (int mb = 0; mb < c.m; ++mb)
      for (int st = 0; st < S; ++st) {
        auto f = when.at({true, mb, st}), b = when.at({false, mb, st});
        EXPECT_GE(b.first, f.second) << label(c);
        if (st > 0) EXPECT_GE(f.first, when.at({true, mb, st - 1}).second) << label(c);
        if (st + 1 < S) EXPECT_GE(b.first, when.at({false, mb, st + 1}).second) << label(c);
      }
  }
}

TEST(PipelineSchedule, ActivationsInFlightGPipeAtMostMOneFOneBAtMostP) {
  for (int p : {2, 4, 8})
    for (int m : {1, 4, 16}) {
      auto g = simulate(make_schedule("gpipe", {p, m, 1}));
      auto f = simulate(make_schedule("1f1b", {p, m, 1}));
      for (int r = 0; r < p; ++r) {
        EXPECT_EQ(g.peak_in_flight[static_cast<size_t>(r)], m);  // GPipe keeps every micro-batch
        EXPECT_LE(f.peak_in_flight[static_cast<size_t>(r)], p);
        EXPECT_EQ(f.peak_in_flight[static_cast<size_t>(r)], std::min(m, p - r));
      }
    }
}

TEST(PipelineSchedule, SimulatedBubbleMatchesTheory) {
  for (SimCosts costs : {SimCosts{1, 1}, SimCosts{1, 2}})
    for (const auto& c : all_cases()) {
      PipelineShape shape{c.p, c.m, c.v};
      auto sim = simulate(make_schedule(c.name, shape), costs);
      const double theory = theoretical_bubble(c.name, shape);
      for (double b : sim.bubble) EXPECT_NEAR(b, theory, 1e-9) << label(c) << " F=" << costs.forward << " B=" << costs.backward;
    }
}

TEST(PipelineSchedule, SimulatorFindsADeadlock) {
  Schedule s = make_schedule("gpipe", {2, 1, 1});
  // Rank 0 waits for a gradient before it sends the activation that produces it.
  s.ranks[0] = {{ActionType::kForward, 0, 0}, {ActionType::kRecvGrad, 0, 0},
                {ActionType::kSendActivation, 0, 0}, {ActionType::kBackward, 0, 0}};
  try {
    simulate(s);
    FAIL() << "expected a deadlock";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("deadlocks: rank 0 waits in recvG0.0; rank 1 waits in recvA0.0"),
              std::string::npos) << e.what();
  }
}

TEST(PipelineSchedule, BadShapesAreUsageErrorsNamingTheKey) {
  auto message = [](const std::string& name, PipelineShape s) {
    try {
      make_schedule(name, s);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("zigzag", {2, 4, 1}).find("schedule \"zigzag\" is unknown; valid schedules: gpipe, 1f1b, interleaved, zb-h1, zb-v"),
            std::string::npos);
  EXPECT_NE(message("1f1b", {2, 4, 2}).find("virtual_stages = 2 needs schedule \"interleaved\""), std::string::npos);
  EXPECT_NE(message("interleaved", {4, 6, 2}).find("PipelineShape::microbatches = 6 must be a multiple of PipelineShape::stages = 4"), std::string::npos);
  EXPECT_NE(message("gpipe", {2, 0, 1}).find("microbatches must be >= 1"), std::string::npos);
  // the zero-bubble schedules (zero_bubble_schedule_test.cpp)
  EXPECT_NE(message("zb-h1", {4, 3, 1})
                .find("needs at least as many micro-batches as pipeline ranks (4), got "
                      "PipelineShape::microbatches = 3"),
            std::string::npos);
  EXPECT_NE(message("zb-v", shape_for("zb-v", 4, 2, 1)).find("raise PipelineShape::microbatches or use 1f1b"),
            std::string::npos);
  EXPECT_NE(message("zb-v", shape_for("zb-v", 2, 4, 3)).find("exactly 2 chunks per rank in a V; got virtual_stages = 3"),
            std::string::npos);
  EXPECT_NE(message("zb-h1", {2, 4, 2}).find("virtual_stages = 2 needs schedule \"interleaved\" (or 2 for \"zb-v\")"),
            std::string::npos);
  EXPECT_NE(message("zb-h2", {2, 4, 1}).find("valid schedules: gpipe, 1f1b, interleaved, zb-h1, zb-v"), std::string::npos);
}

}  // namespace
}  // namespace paratorch::pipeline

namespace paratorch::pipeline {
namespace {

// The schedule table: each row's traits say what its lists do, so callers
// that read the traits (the planner, the partition, the config) act on what
// the schedule really is.
TEST(ScheduleTable, EveryRowsTraitsMatchTheListsItBuilds) {
  ASSERT_EQ(schedule_names(), (std::vector<std::string>{"gpipe", "1f1b", "interleaved", "zb-h1", "zb-v"}));
  const int p = 4, m = 8;
  for (const auto& name : schedule_names()) {
    const ScheduleKind& kind = schedule_kind(name);
    EXPECT_EQ(kind.name, name);
    EXPECT_EQ(splits_backward(name), kind.splits_backward) << name;
    const PipelineShape shape = shape_for(name, p, m, kind.interleaves_chunks ? 2 : 1);
    EXPECT_EQ(shape.v_shape, kind.v_shape) << name;
    EXPECT_EQ(shape.virtual_stages, kind.chunks_per_rank(2)) << name;
    const Schedule s = make_schedule(name, shape);
    bool has_split = false, forward_after_backward = false, seen_backward = false;
    for (const auto& a : s.ranks[0]) {
      has_split |= a.type == ActionType::kBackwardInput || a.type == ActionType::kBackwardWeight;
      if (a.type == ActionType::kForward) forward_after_backward |= seen_backward;
      seen_backward |= a.type == ActionType::kBackward || a.type == ActionType::kBackwardInput;
    }
    EXPECT_EQ(has_split, kind.splits_backward) << name;
    EXPECT_EQ(!forward_after_backward, kind.all_forwards_first) << name;
    // The bubble formula the table's bubble_work gives, against the lists
    // themselves (F = 1, B = 2 and I = W = 1), where the theory is exact.
    if (!kind.v_shape)
      for (double b : simulate(s, SimCosts{1, 2}).bubble) EXPECT_NEAR(b, theoretical_bubble(name, shape), 1e-9) << name;
  }
  EXPECT_EQ(find_schedule_kind("pipedream"), nullptr);
  EXPECT_FALSE(splits_backward("pipedream"));
  try {
    schedule_kind("pipedream");
    ADD_FAILURE() << "an unknown schedule was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("valid schedules: gpipe, 1f1b, interleaved, zb-h1, zb-v"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace paratorch::pipeline
