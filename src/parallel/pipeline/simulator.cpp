// src/parallel/pipeline/simulator.cpp — see simulator.h. Each rank has a clock and a
// cursor into its list; ranks advance round-robin until all lists are done
// or none can move (a deadlock). A send posts its message at the sender's
// clock; a receive waits until the message exists and then until its time.
#include "parallel/pipeline/simulator.h"

#include <paratorch/errors.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace paratorch::pipeline {
namespace {

// (source rank, destination rank, tag) of one transfer.
using MessageKey = std::tuple<int, int, int>;

// The transfer an action sends or receives, seen from `rank`.
MessageKey message_of(const PipelineShape& s, int rank, const Action& a) {
  const int stage = s.model_stage(rank, a.chunk);
  switch (a.type) {
    case ActionType::kSendActivation:
      return {rank, s.rank_of_stage(stage + 1), transfer_tag(s, a.microbatch, stage, false)};
    case ActionType::kRecvActivation:
      return {s.rank_of_stage(stage - 1), rank, transfer_tag(s, a.microbatch, stage - 1, false)};
    case ActionType::kSendGrad:
      return {rank, s.rank_of_stage(stage - 1), transfer_tag(s, a.microbatch, stage - 1, true)};
    default:  // kRecvGrad
      return {s.rank_of_stage(stage + 1), rank, transfer_tag(s, a.microbatch, stage, true)};
  }
}

struct SimState {
  const Schedule& schedule;
  SimCosts costs;
  std::vector<size_t> cursor;
  std::vector<double> clock;
  std::vector<std::set<std::pair<int, int>>> in_flight;  // (micro-batch, chunk): forwarded, gradients not done
  std::vector<std::set<std::pair<int, int>>> retained;   // I done, W pending
  std::map<MessageKey, double> messages;                 // posted, not yet received
  SimResult result;

  // Checks a compute action against what rank r has done, updates the
  // in-flight and retained sets, and returns its cost for a whole stage.
  double compute(int r, const Action& a) {
    auto& flight = in_flight[static_cast<size_t>(r)];
    auto& kept = retained[static_cast<size_t>(r)];
    const std::pair<int, int> id{a.microbatch, a.chunk};
    auto fail = [&](const std::string& why) {
      throw RuntimeFailure("pipeline schedule: rank " + std::to_string(r) + " runs " + to_string(a) + " " + why);
    };
    const double input = costs.backward_input >= 0 ? costs.backward_input : costs.backward / 2;
    const double weight = costs.backward_weight >= 0 ? costs.backward_weight : costs.backward / 2;
    switch (a.type) {
      case ActionType::kForward:
        if (!flight.insert(id).second) fail("twice");
        return costs.forward;
      case ActionType::kBackward:
        if (!flight.count(id) || kept.count(id)) fail("without its forward, or after its I");
        flight.erase(id);
        return costs.backward;
      case ActionType::kBackwardInput:
        if (!flight.count(id) || !kept.insert(id).second) fail("without its forward, or twice");
        return input;
      default:  // kBackwardWeight
        if (!kept.count(id)) fail("before its I");
        kept.erase(id), flight.erase(id);
        return weight;
    }
  }

  // Runs rank r's next action if it can; false when it must wait.
  bool step(int r) {
    const PipelineShape& s = schedule.shape;
    const Action& a = schedule.ranks[static_cast<size_t>(r)][cursor[static_cast<size_t>(r)]];
    double& t = clock[static_cast<size_t>(r)];
    const auto& flight = in_flight[static_cast<size_t>(r)];
    if (a.type == ActionType::kSendActivation || a.type == ActionType::kSendGrad) {
      if (!messages.emplace(message_of(s, r, a), t + costs.transfer).second)
        throw RuntimeFailure("pipeline schedule: rank " + std::to_string(r) + " sends " + to_string(a) + " twice");
    } else if (a.type == ActionType::kRecvActivation || a.type == ActionType::kRecvGrad) {
      auto it = messages.find(message_of(s, r, a));
      if (it == messages.end()) return false;
      t = std::max(t, it->second);
      messages.erase(it);
    } else {
      const double cost = compute(r, a) / s.virtual_stages;
      result.timeline[static_cast<size_t>(r)].push_back({a, t, t + cost});
      result.busy[static_cast<size_t>(r)] += cost;
      t += cost;
      auto& peak = result.peak_in_flight[static_cast<size_t>(r)];
      peak = std::max(peak, static_cast<int>(flight.size()));
      auto& peak_retained = result.peak_retained_graphs[static_cast<size_t>(r)];
      peak_retained = std::max(peak_retained, static_cast<int>(retained[static_cast<size_t>(r)].size()));
    }
    ++cursor[static_cast<size_t>(r)];
    return true;
  }
};

}  // namespace

double SimResult::max_bubble() const { return bubble.empty() ? 0 : *std::max_element(bubble.begin(), bubble.end()); }

SimResult simulate(const Schedule& schedule, SimCosts costs) {
  const size_t p = schedule.ranks.size();
  SimState st{schedule, costs, std::vector<size_t>(p, 0), std::vector<double>(p, 0.0),
              std::vector<std::set<std::pair<int, int>>>(p), std::vector<std::set<std::pair<int, int>>>(p), {}, {}};
  st.result.busy.assign(p, 0.0);
  st.result.peak_in_flight.assign(p, 0);
  st.result.peak_retained_graphs.assign(p, 0);
  st.result.timeline.resize(p);
  for (bool moved = true; moved;) {
    moved = false;
    for (size_t r = 0; r < p; ++r)
      while (st.cursor[r] < schedule.ranks[r].size() && st.step(static_cast<int>(r))) moved = true;
  }
  std::string blocked;
  for (size_t r = 0; r < p; ++r)
    if (st.cursor[r] < schedule.ranks[r].size())
      blocked += " rank " + std::to_string(r) + " waits in " + to_string(schedule.ranks[r][st.cursor[r]]) + ";";
  if (!blocked.empty()) throw RuntimeFailure("pipeline schedule " + schedule.name + " deadlocks:" + blocked);
  if (!st.messages.empty())
    throw RuntimeFailure("pipeline schedule " + schedule.name + ": " + std::to_string(st.messages.size()) +
                         " transfer(s) sent but never received");
  for (size_t r = 0; r < p; ++r)
    if (!st.in_flight[r].empty())
      throw RuntimeFailure("pipeline schedule " + schedule.name + ": rank " + std::to_string(r) +
                           " ends with forwards that have no backward (or no W)");
  st.result.makespan = *std::max_element(st.clock.begin(), st.clock.end());
  for (size_t r = 0; r < p; ++r)
    st.result.bubble.push_back(st.result.makespan > 0 ? 1.0 - st.result.busy[r] / st.result.makespan : 0.0);
  return st.result;
}

}  // namespace paratorch::pipeline
