// src/plan/comm_cost.cpp — see comm_cost.h.
#include "plan/comm_cost.h"

namespace paratorch::plan {

bool GroupSpan::crosses_nodes(const Cluster& cluster) const {
  // Groups start at a multiple of stride * size (the layouts the planner
  // searches have tp dividing the node size), so the span decides.
  return size > 1 && static_cast<int64_t>(stride) * (size - 1) + 1 > cluster.gpus_per_node;
}

double CommCost::alpha(bool inter) const {
  return (inter ? cluster.inter_node_latency_us : cluster.intra_node_latency_us) * 1e-6;
}

double CommCost::beta(bool inter) const { return (inter ? cluster.inter_node_gbps : cluster.intra_node_gbps) * 1e9; }

double CommCost::all_reduce_s(double bytes, const GroupSpan& g) const {
  if (g.size <= 1) return 0;
  const bool inter = g.crosses_nodes(cluster);
  const double n = g.size;
  return 2 * (n - 1) * alpha(inter) + 2 * (n - 1) / n * bytes / beta(inter);
}

double CommCost::reduce_scatter_s(double bytes, const GroupSpan& g) const {
  if (g.size <= 1) return 0;
  const bool inter = g.crosses_nodes(cluster);
  const double n = g.size;
  return (n - 1) * alpha(inter) + (n - 1) / n * bytes / beta(inter);
}

double CommCost::p2p_s(double bytes, int distance) const {
  const bool inter = distance >= cluster.gpus_per_node;
  return alpha(inter) + bytes / beta(inter);
}

}  // namespace paratorch::plan
