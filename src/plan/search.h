// src/plan/search.h — `paratorch plan`: every layout of a run on a cluster,
// ranked by predicted throughput.
//
// Searched: dp x pp x tp using all of the cluster's accelerators, with tp
// inside a node and dividing the heads and vocabulary, pp dividing the
// layers; micro-batch sizes 1, 2, 4, 8, 16 (dividing the replica's batch);
// schedules gpipe, 1f1b and interleaved with v = 2 or 4 virtual stages; ZeRO
// stages 0-3 (2-3 at pp = 1, as paratorch runs them); recomputation off and
// on. Every candidate is first predicted with the closed-form bubble; the
// best that fit in memory are then replayed through the simulator and
// ranked by that.
#pragma once
#include "plan/predict.h"

#include <vector>

namespace paratorch::plan {

struct SearchOptions {
  /// Candidates replayed through the simulator after the closed-form pass
  /// (0: rank by the closed form alone).
  int simulated = 24;
  /// Fixed choices (unset: searched).
  int tp = 0, pp = 0;
  int zero = -1;
  int64_t microbatch_size = 0;
  std::string schedule;  // "" = searched
  int recompute = -1;    // 0 | 1
};

struct SearchResult {
  std::vector<Prediction> ranked;  // fitting layouts, best first (simulated)
  size_t candidates = 0;           // layouts predicted
  /// The layout that came nearest to fitting, when none fits.
  Prediction nearest_miss;
  bool any_fits() const { return !ranked.empty(); }
};

SearchResult search_layouts(const RunShape& run, const Cluster& cluster, const SearchOptions& options = {});

}  // namespace paratorch::plan
