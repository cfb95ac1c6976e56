// src/parallel/pipeline/simulator.h — runs a Schedule's action lists with fixed
// compute costs and fixed transfer times, as the executor would.
//
// It proves a schedule sound before any rank runs it — every receive is
// matched by exactly one send, nothing deadlocks, no backward precedes its
// forward — and it measures what the schedule promises: the bubble (idle
// fraction of each rank over the step), the activations in flight
// (micro-batches forwarded but not yet backwarded, W included) and, for the
// zero-bubble schedules, the retained graphs (I done, W pending) per rank.
#pragma once
#include "parallel/pipeline/schedule.h"

#include <vector>

namespace paratorch::pipeline {

/// Cost of a forward and a backward through one whole pipeline stage; a
/// chunk of an interleaved schedule costs 1/v of that.
struct SimCosts {
  double forward = 1.0;
  double backward = 2.0;
  /// Time from a send to its receive being satisfiable (0: instant; the
  /// planner gives it the link's alpha-beta time: plan/comm_cost.h).
  double transfer = 0.0;
  /// I and W of a split backward (zb-h1, zb-v); negative: half of `backward` each.
  double backward_input = -1.0;
  double backward_weight = -1.0;
};

struct TimedAction {
  Action action;
  double start = 0, end = 0;
};

struct SimResult {
  double makespan = 0;                              // time of the step
  std::vector<double> busy;                         // per rank: compute time
  std::vector<double> bubble;                       // per rank: 1 - busy / makespan
  std::vector<int> peak_in_flight;                  // per rank
  std::vector<int> peak_retained_graphs;            // per rank: I done, W pending
  std::vector<std::vector<TimedAction>> timeline;   // per rank: compute actions
  double max_bubble() const;
};

/// Simulates `schedule`. RuntimeFailure on a deadlock (naming every blocked
/// rank and the action it waits in), an unmatched or duplicated transfer, a
/// backward (or I) before its forward, a W before its I, or a micro-batch
/// whose backward is missing or runs twice.
SimResult simulate(const Schedule& schedule, SimCosts costs = {});

}  // namespace paratorch::pipeline
