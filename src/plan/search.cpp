// src/plan/search.cpp — see search.h.
#include "plan/search.h"

#include "parallel/pipeline/schedule.h"
#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch::plan {
namespace {

// The schedules tried at pp > 1, in the schedule table's order, with 2 and
// 4 chunks per rank for those that interleave; at pp = 1 there is no
// pipeline, and 1f1b stands for none.
std::vector<std::pair<std::string, int>> schedule_candidates(int pp) {
  if (pp == 1) return {{"1f1b", 1}};
  std::vector<std::pair<std::string, int>> out;
  for (const auto& name : pipeline::schedule_names()) {
    const pipeline::ScheduleKind& kind = pipeline::schedule_kind(name);
    for (int v : kind.interleaves_chunks ? std::vector<int>{2, 4} : std::vector<int>{1}) out.push_back({name, v});
  }
  return out;
}

std::vector<PlanLayout> candidates(const RunShape& run, const Cluster& cluster, const SearchOptions& o) {
  const ModelShape& g = run.model;
  std::vector<PlanLayout> out;
  const int n = cluster.gpus();
  for (int tp = 1; tp <= cluster.gpus_per_node; ++tp) {
    if (cluster.gpus_per_node % tp || n % tp || g.heads % tp || g.vocab % tp || (o.tp && tp != o.tp)) continue;
    for (int pp = 1; pp <= n / tp; ++pp) {
      if ((n / tp) % pp || g.layers % pp || (o.pp && pp != o.pp)) continue;
      const int dp = n / (tp * pp);
      if (run.global_batch % dp) continue;
      for (int64_t mbs : {1, 2, 4, 8, 16}) {
        if (o.microbatch_size && mbs != o.microbatch_size) continue;
        if ((run.global_batch / dp) % mbs) continue;
        const int64_t m = run.global_batch / (dp * mbs);
        for (const auto& [schedule, v] : schedule_candidates(pp)) {
          if (!o.schedule.empty() && pp > 1 && schedule != o.schedule) continue;
          if (v > 1 && (g.layers % (pp * v) || m % pp)) continue;
          if (pipeline::schedule_kind(schedule).v_shape && g.layers % (2 * pp)) continue;  // two equal chunks per rank
          for (int zero = 0; zero <= 3; ++zero) {
            if ((o.zero >= 0 && zero != o.zero) || (zero > 1 && pp > 1) || (zero > 0 && dp == 1)) continue;
            for (bool recompute : {false, true})
              if ((o.recompute < 0 || recompute == (o.recompute == 1)) && (zero < 3 || recompute))
                out.push_back({dp, pp, tp, zero, mbs, schedule, v, recompute});
          }
        }
      }
    }
  }
  return out;
}

bool faster(const Prediction& a, const Prediction& b) { return a.tokens_per_s > b.tokens_per_s; }

}  // namespace

SearchResult search_layouts(const RunShape& run, const Cluster& cluster, const SearchOptions& options) {
  SearchResult result;
  std::vector<Prediction> fitting;
  for (const auto& layout : candidates(run, cluster, options)) {
    try {
      check_plan_layout(run, cluster, layout);  // e.g. more micro-batches than the executor's tags allow
    } catch (const UsageError&) {
      continue;
    }
    Prediction p = predict(run, cluster, layout, /*simulate=*/false);
    ++result.candidates;
    if (p.fits) fitting.push_back(p);
    else if (result.nearest_miss.step_s == 0 || p.memory_over_gb < result.nearest_miss.memory_over_gb)
      result.nearest_miss = p;
  }
  if (result.candidates == 0)
    throw UsageError("paratorch: plan: no layout of " + std::to_string(cluster.gpus()) +
                     " accelerators divides this model and batch (tp must divide n_heads, vocab_size and "
                     "gpus_per_node; pp n_layers; dp the global batch): change [data] global_batch or the cluster");
  std::sort(fitting.begin(), fitting.end(), faster);
  if (options.simulated <= 0) {  // the closed-form ranking alone
    result.ranked = std::move(fitting);
    return result;
  }
  if (fitting.size() > static_cast<size_t>(options.simulated)) fitting.resize(static_cast<size_t>(options.simulated));
  for (auto& p : fitting) {
    p = predict(run, cluster, p.layout, /*simulate=*/true);
    if (p.fits) result.ranked.push_back(std::move(p));
  }
  std::sort(result.ranked.begin(), result.ranked.end(), faster);
  return result;
}

}  // namespace paratorch::plan
