// src/parallel/pipeline/zb_schedule.cpp — the zero-bubble orders (Qi et al.,
// "Zero Bubble Pipeline Parallelism", 2023); see compute_order.h.
//
// Splitting a backward into I (input gradient) and W (weight gradient)
// leaves W free to move: nothing waits for it but the optimizer step. Both
// schedules move W into slots where 1F1B waits.
#include "parallel/pipeline/compute_order.h"

#include <algorithm>
#include <deque>
#include <limits>

namespace paratorch::pipeline {

ComputeOrder zb_h1_order(const PipelineShape& s, int rank) {
  const int m = s.microbatches, warmup = std::min(s.stages - rank - 1, m), defer = rank;
  ComputeOrder out;
  for (int i = 0; i < warmup; ++i) out.push_back({ActionType::kForward, i, 0});
  for (int i = 0; i < m; ++i) {
    if (warmup + i < m) out.push_back({ActionType::kForward, warmup + i, 0});
    out.push_back({ActionType::kBackwardInput, i, 0});
    // Rank r keeps r W's pending: p-r-1 warm-up forwards + 1 + r = p in
    // flight, 1F1B's peak on rank 0, and the later ranks send their I's
    // back sooner, which is what shortens everyone's wait.
    if (i >= defer) out.push_back({ActionType::kBackwardWeight, i - defer, 0});
  }
  for (int i = std::max(0, m - defer); i < m; ++i) out.push_back({ActionType::kBackwardWeight, i, 0});
  return out;
}

namespace {

// One rank of the list scheduler.
struct ZbvRank {
  double clock = 0;
  int next_f[2] = {0, 0}, next_i[2] = {0, 0};
  int in_flight = 0;                      // chunk micro-batches forwarded, W not done
  std::deque<std::pair<int, int>> pending_w;  // (micro-batch, chunk), oldest first
  ComputeOrder order;
};

struct Candidate {
  ComputeStep step;
  double ready = std::numeric_limits<double>::infinity();
  int rank_in_kind = 0;  // I before F before W, then the tie-break below
  int tie = 0;
};

bool better(const Candidate& a, const Candidate& b) {
  if (a.ready != b.ready) return a.ready < b.ready;
  if (a.rank_in_kind != b.rank_in_kind) return a.rank_in_kind < b.rank_in_kind;
  return a.tie < b.tie;
}

}  // namespace

std::vector<ComputeOrder> zb_v_orders(const PipelineShape& s) {
  const int p = s.stages, m = s.microbatches, S = s.model_stages(), limit = 2 * p;
  const double cost = 0.5;  // F = I = W, each half of a stage's forward
  std::vector<std::vector<double>> f_end(S, std::vector<double>(m, -1)), i_end(S, std::vector<double>(m, -1));
  std::vector<ZbvRank> ranks(static_cast<size_t>(p));
  const size_t total = static_cast<size_t>(3 * m * 2);
  auto best_of = [&](int r) {
    ZbvRank& R = ranks[static_cast<size_t>(r)];
    Candidate best;
    auto offer = [&](const Candidate& c) {
      if (better(c, best)) best = c;
    };
    for (int c = 0; c < 2; ++c) {
      const int st = s.model_stage(r, c);
      const int fi = R.next_i[c];
      if (fi < m && f_end[st][fi] >= 0 && (st == S - 1 || i_end[st + 1][fi] >= 0))
        offer({{ActionType::kBackwardInput, fi, c},
               std::max({R.clock, f_end[st][fi], st == S - 1 ? 0.0 : i_end[st + 1][fi]}), 0, st});
      const int ff = R.next_f[c];
      if (ff < m && R.in_flight < limit && (st == 0 || f_end[st - 1][ff] >= 0))
        offer({{ActionType::kForward, ff, c}, std::max(R.clock, st == 0 ? 0.0 : f_end[st - 1][ff]), 1, -st});
    }
    if (!R.pending_w.empty())
      offer({{ActionType::kBackwardWeight, R.pending_w.front().first, R.pending_w.front().second}, R.clock, 2, 0});
    return best;
  };
  for (size_t done = 0; done < total * static_cast<size_t>(p); ++done) {
    int pick = -1;
    Candidate chosen;
    for (int r = 0; r < p; ++r) {
      if (ranks[static_cast<size_t>(r)].order.size() == total) continue;
      Candidate c = best_of(r);
      if (c.ready < chosen.ready) chosen = c, pick = r;
    }
    if (pick < 0) break;  // cannot happen: some rank can always move (F then I then W)
    ZbvRank& R = ranks[static_cast<size_t>(pick)];
    const ComputeStep& st = chosen.step;
    const int stage = s.model_stage(pick, st.chunk);
    R.clock = chosen.ready + cost;
    R.order.push_back(st);
    if (st.type == ActionType::kForward) f_end[stage][st.microbatch] = R.clock, ++R.next_f[st.chunk], ++R.in_flight;
    if (st.type == ActionType::kBackwardInput)
      i_end[stage][st.microbatch] = R.clock, ++R.next_i[st.chunk], R.pending_w.emplace_back(st.microbatch, st.chunk);
    if (st.type == ActionType::kBackwardWeight) R.pending_w.pop_front(), --R.in_flight;
  }
  std::vector<ComputeOrder> out;
  for (auto& R : ranks) out.push_back(std::move(R.order));
  return out;
}

}  // namespace paratorch::pipeline
